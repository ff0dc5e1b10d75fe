package worker

import "strings"

// How a thread is normalised before it is rated: the steps and the frame
// lists of satyr's GDB normalisation (sr_normalize_gdb_thread), for the
// libraries every C and C++ crash goes through (glibc, libstdc++, the
// dynamic linker, the kernel's vDSO) and for GLib, GObject and GDK, under
// most desktop programs. satyr lists the abort paths of other projects
// too (X, Qt, JVM, Mozilla ...); a backtrace through those keeps their
// frames here and may rate otherwise than ABRT rates it.
//
// A frame matches an entry when its function name is the entry's and its
// source file (as parseFrame reads it: none for "from" a shared library)
// contains one of the entry's substrings; the empty substring matches any
// source file, and a frame without one matches nothing.
type frameMatch struct {
	name    string
	sources []string
}

func (m frameMatch) matches(f gdbFrame) bool {
	if f.name != m.name || f.source == "" {
		return false
	}
	for _, s := range m.sources {
		if strings.Contains(f.source, s) {
			return true
		}
	}
	return false
}

func matchesAny(ms []frameMatch, f gdbFrame) bool {
	for _, m := range ms {
		if m.matches(f) {
			return true
		}
	}
	return false
}

// exitFrames end a process: the deepest one in a thread and everything
// above it go (the raise and abort under a failed assertion, the exit
// handlers).
var exitFrames = []frameMatch{
	{"__run_exit_handlers", []string{"exit.c"}},
	{"exit", []string{"exit.c"}},
	{"do_exit", []string{"exit.c"}},
	{"raise", []string{"pt-raise.c", "raise.c", "libc.so", "libc-", "libpthread.so"}},
	{"__GI_raise", []string{"raise.c"}},
	{"abort", []string{"abort.c", "libc.so", "libc-"}},
	{"__GI_abort", []string{"abort.c"}},
	{"__chk_fail", []string{"chk_fail.c", "libc.so"}},
	{"__stack_chk_fail", []string{"stack_chk_fail.c", "libc.so"}},
	{"kill", []string{"syscall-template.S"}},
}

// fatalHelpers are glibc's assertion, fortify and malloc-check paths:
// such a frame and everything above it go.
var fatalHelpers = func() []frameMatch {
	var ms []frameMatch
	for _, n := range []string{
		"__assert_fail", "__assert_fail_base", "__chk_fail", "__longjmp_chk", "__malloc_assert",
		"__strcat_chk", "__strcpy_chk", "__strncpy_chk", "__vsnprintf_chk", "___vsnprintf_chk",
		"__snprintf_chk", "___snprintf_chk", "__vasprintf_chk", "__vsprintf_chk", "___sprintf_chk",
		"__fwprintf_chk", "__asprintf_chk", "___printf_chk", "___fprintf_chk", "__vswprintf_chk",
	} {
		ms = append(ms, frameMatch{n, []string{""}})
	}
	for _, n := range []string{"malloc_consolidate", "malloc_printerr", "_int_malloc", "_int_free", "_int_realloc"} {
		ms = append(ms, frameMatch{n, []string{"malloc.c", "libc"}})
	}
	for _, n := range []string{"_int_memalign", "__libc_free", "__libc_malloc", "__libc_memalign", "__libc_realloc", "__posix_memalign", "__libc_calloc"} {
		ms = append(ms, frameMatch{n, []string{"malloc.c"}})
	}
	return append(ms, frameMatch{"__libc_fatal", []string{"libc"}})
}()

// removableFrames say nothing of the crash where they are: C++
// termination, the process's and threads' start, glibc's stdio and
// poll, the vDSO's system call entry. Only the frame itself goes.
var removableFrames = []frameMatch{
	{"__gnu_cxx::__verbose_terminate_handler", []string{"vterminate.cc"}},
	{"__verbose_terminate_handler", []string{"vterminate.cc"}},
	{"__cxxabiv1::__terminate", []string{"eh_terminate.cc"}},
	{"std::terminate", []string{"eh_terminate.cc"}},
	{"__cxxabiv1::__cxa_throw", []string{"eh_throw.cc"}},
	{"__cxxabiv1::__cxa_rethrow", []string{"eh_throw.cc"}},
	{"__cxxabiv1::__cxa_pure_virtual", []string{"pure.cc"}},
	{"_start", []string{""}},
	{"__libc_start_main", []string{"libc"}},
	{"clone", []string{"clone.S", "libc"}},
	{"start_thread", []string{"pthread_create.c", "libpthread"}},
	{"poll", []string{"libc"}},
	{"_IO_new_fclose", []string{"iofclose.c", "libc"}},
	{"_IO_vfprintf_internal", []string{"vfprintf.c", "libc"}},
	{"_IO_default_xsputn", []string{"genops.c", "libc"}},
	{"_IO_wdefault_xsputn", []string{"wgenops.c", "libc"}},
	{"__libc_message", []string{"libc_fatal.c", "libc"}},
	{"_dl_signal_error", []string{"dl-error.c", "ld-linux"}},
	{"__kernel_vsyscall", []string{""}},
}

// glibRemovable are GLib's, GObject's and GDK's main loop, signal
// emission, logging and assertion frames: removable too.
var glibRemovable = func() []frameMatch {
	var ms []frameMatch
	add := func(sources []string, names ...string) {
		for _, n := range names {
			ms = append(ms, frameMatch{n, sources})
		}
	}
	add([]string{"gmain.c", "libglib"}, "g_main_context_dispatch", "g_main_context_iterate", "g_main_dispatch",
		"g_main_loop_run", "g_timeout_dispatch")
	add([]string{"gmain.c", "gutf8.c"}, "g_idle_dispatch")
	add([]string{"gmessages.c", "libglib"}, "g_log", "g_logv", "_g_log_abort", "g_log_default_handler",
		"g_log_writer_default", "g_log_structured_array", "g_log_structured")
	add([]string{"gtestutils.c", "libglib"}, "g_assertion_message", "g_assertion_message_expr")
	add([]string{"gmem.c", "libglib"}, "g_free")
	add([]string{"gthreadpool.c", "libglib"}, "g_thread_pool_thread_proxy")
	add([]string{"gthread.c", "libglib"}, "g_thread_create_proxy")
	add([]string{"gprintf.c", "libglib"}, "g_vasprintf")
	add([]string{"gslice.c", "libglib"}, "smc_tree_abort")
	add([]string{"libglib"}, "g_strdup_vprintf", "g_strdup_printf", "g_print", "g_thread_abort")
	add([]string{"gclosure.c", "libgobject"}, "g_closure_invoke")
	add([]string{"gclosure.c", "libglib"}, "g_type_class_meta_marshal")
	add([]string{"gsignal.c", "libgobject"}, "g_signal_emit_valist", "signal_emit_unlocked_R", "g_signal_emit",
		"g_signal_handlers_destroy", "invalid_closure_notify", "g_signal_emit_by_name")
	add([]string{"gobject.c", "libgobject"}, "g_object_dispatch_properties_changed", "g_object_notify_dispatcher",
		"g_object_unref", "g_object_run_dispose", "g_object_new", "g_object_newv", "g_object_notify")
	add([]string{"gmarshal.c", "libgobject"}, "g_cclosure_marshal_VOID__BOXED")
	add([]string{"gclosure.c", "gmarshal.c", "libgobject"}, "g_cclosure_marshal_VOID__VOID")
	add([]string{"gdk.c"}, "gdk_threads_dispatch")
	add([]string{"gdkevents-x11.c", "gdkevents.c"}, "gdk_event_dispatch")
	add([]string{"gdkeventsource.c"}, "gdk_event_source_dispatch")
	add([]string{"gdkmain-x11.c"}, "gdk_x_error")
	add([]string{"gdkdisplay-x11.c", "libgdk"}, "_gdk_x11_display_error_event")
	return ms
}()

// archVariants are glibc's string functions whose CPU-specific variants
// (__memcpy_sse2 ...) are renamed to the function.
var (
	archVariants = []string{
		"memchr", "memcmp", "memcpy", "memmove", "memset", "rawmemchr", "strcasecmp", "strcasecmp_l",
		"strcat", "strchr", "strchrnul", "strcmp", "strcpy", "strcspn", "strlen", "strncmp", "strncpy",
		"strpbrk", "strrchr", "strspn", "strstr", "strtok",
	}
	archSuffixes = []string{"_sse2", "_sse2_bsf", "_ssse3", "_ssse3_rep", "_ssse3_back", "_sse42", "_ia32"}
)

// lastExitFrame returns the index of the deepest exit frame of fs, -1
// when it has none.
func lastExitFrame(fs []gdbFrame) int {
	last := -1
	for i, f := range fs {
		if matchesAny(exitFrames, f) {
			last = i
		}
	}
	return last
}

// normalizeThread returns a thread's frames as satyr normalises them
// before rating: the deepest exit frame and those above it go; glibc's
// "__GI_" and GLib's "IA__" prefixes go from names with a source file
// and CPU-specific string functions get their plain names; each fatal
// helper goes with the frames above it and each removable frame alone; a
// top or bottom "0x0 in ??" frame (a call through a null pointer, the
// end of a thread's stack) goes; and a function calling itself folds
// into one frame.
func normalizeThread(frames []gdbFrame) []gdbFrame {
	fs := append([]gdbFrame(nil), frames[lastExitFrame(frames)+1:]...)
	for i := range fs {
		if fs[i].source == "" {
			continue
		}
		for _, p := range []string{"IA__gdk", "IA__g_", "IA__gtk"} {
			if strings.HasPrefix(fs[i].name, p) {
				fs[i].name = fs[i].name[len("IA__"):]
			}
		}
		fs[i].name = strings.TrimPrefix(fs[i].name, "__GI_")
	}
	for i := range fs {
		fs[i].name = plainStringFunction(fs[i])
	}
	var kept []gdbFrame
	for _, f := range fs {
		switch {
		case matchesAny(fatalHelpers, f) || matchesAny(exitFrames, f):
			kept = kept[:0]
		case matchesAny(removableFrames, f) || matchesAny(glibRemovable, f):
		default:
			kept = append(kept, f)
		}
	}
	nullCall := func(f gdbFrame) bool { return f.hasAddr && f.addr == 0 && f.name == "??" }
	if len(kept) > 0 && nullCall(kept[0]) {
		kept = kept[1:]
	}
	if len(kept) > 0 && nullCall(kept[len(kept)-1]) {
		kept = kept[:len(kept)-1]
	}
	var out []gdbFrame
	for _, f := range kept {
		if n := len(out); n > 0 && out[n-1].name != "??" && out[n-1].name == f.name {
			continue
		}
		out = append(out, f)
	}
	return out
}

// plainStringFunction returns f's name, a CPU-specific variant of a
// glibc string function renamed to the function.
func plainStringFunction(f gdbFrame) string {
	if !strings.HasPrefix(f.name, "__") || f.source == "" {
		return f.name
	}
	for _, fn := range archVariants {
		for _, suf := range archSuffixes {
			if f.name != "__"+fn+suf {
				continue
			}
			for _, src := range []string{fn, "/sysdeps", "libc.so"} {
				if strings.Contains(f.source, src) {
					return fn
				}
			}
		}
	}
	return f.name
}
