// Package corefile reads ELF core files: which objects the process had
// mapped, at which addresses, from which files, with which GNU build-ids.
// That is the list `eu-unstrip -n --core` prints, and what the resolver's
// coredump2packages needs to answer "which packages does this core need?".
//
// Of retraced, it may import only index/elfnote. It takes the
// identification check, note parsing and the build-id rule from there;
// the resolver and the retrace worker call it. It reads the core's headers
// itself rather than through elfnote.NewFile and debug/elf: a core may
// have a million program headers (56 MiB, Fedora's vm.max_map_count), more
// than NewFile lets debug/elf read whole, and corefile reads only the
// tables it needs, bounded by MaxSegments.
//
// # Vocabulary
//
// A core is an ELF file of type ET_CORE. Its PT_NOTE segments hold the
// process's notes (owner "CORE": NT_PRSTATUS per thread, NT_SIGINFO,
// NT_AUXV, NT_FILE); its PT_LOAD segments are the memory image: each maps
// [p_vaddr, p_vaddr+p_memsz), of which the first p_filesz bytes are in the
// file, the rest not dumped.
//
// A mapping is one NT_FILE entry: an address range, a file offset and the
// path of the file mapped there. A module is an object the process
// mapped: the run of one file's consecutive mappings, starting at file
// offset 0 for an executable or a shared library, or the vdso, which the
// auxiliary vector (AT_SYSINFO_EHDR) locates. The load bias is where the
// object was mapped less the address it was linked for.
//
// # How modules and build-ids are found
//
// [NewFile] reads the ELF header and the program headers of the core
// (the class and byte order come from the header: 32- and 64-bit, little-
// and big-endian cores read alike), then the PT_NOTE segments, parsed with
// [elfnote.ParseNotes]. NT_FILE gives the modules and their paths.
// For a module at file offset 0 it reads the object's ELF header and
// program headers from the memory image: Linux dumps the first page of
// every file-backed mapping that starts with an ELF header (coredump_filter
// bit 4, on by default) and gdb's gcore does likewise. The object's
// PT_LOAD holding file offset 0 gives the load bias; its PT_NOTE segments,
// read at p_vaddr plus the bias, give the GNU build-id, under the rule
// the index uses for files ([elfnote.BlobBuildID]: owner "GNU\0", 1 to
// [elfnote.MaxBuildIDBytes] bytes). The vdso is read the same way from AT_SYSINFO_EHDR and named by
// its DT_SONAME ("linux-vdso.so.1"), as eu-unstrip names it. A core
// without NT_FILE (Linux before 3.7) is scanned instead, as libdwfl does:
// each dumped segment starting with an ELF header is a module without a
// path.
//
// Where this differs from eu-unstrip (libdwfl): module ranges come from
// NT_FILE, not from the object's program headers, so End is page-rounded
// and stops at the file's last mapping (eu-unstrip's size includes .bss);
// names are NT_FILE paths, never the link map's names or sonames, which
// eu-unstrip prefers when it finds the file on disk; and ELF images in
// memory that no file backs (other than the vdso) are not modules.
// Executable comes from AT_PHDR, AT_ENTRY or AT_EXECFN in NT_AUXV.
//
// # Errors
//
// Input that is not an ELF core file yields an error matching
// [ErrNotCore]. A malformed or truncated ELF header, program header
// table or note segment yields a [*FormatError] whose Off is the byte
// offset in the file of the field or table at fault; a malformed note
// wraps the [*elfnote.FormatError] that found it. A core cut short inside
// its memory segments is not an error: cores are often truncated by
// RLIMIT_CORE or a size limit, and the notes come first, so [Core] lists
// every module and sets Truncated, and a module whose ELF header or
// build-id note lies past the end of the file has a nil BuildID. The same
// holds for any module whose image is missing or malformed: one bad object
// does not hide the others.
//
// # Security
//
// The input is hostile. Every size and count read from the file is checked
// against the file's size before anything is allocated for it, so a short
// file claiming large tables costs nothing. At most [MaxSegments] program
// headers and [MaxNoteBytes] of notes are read; NT_FILE counts must fit
// their note and names are at most [MaxPathBytes]. Reads of the memory
// image are bounded per object (1024 program headers, 64 KiB of notes,
// 64 KiB of dynamic section, 256-byte soname) and in all (64 MiB), each
// address is read once, and a read spanning more than 64 segments is
// refused, so crafted overlapping or tiny segments cannot multiply the
// work. No function of this package panics on any input; NewFile is fuzzed
// (FuzzNewFile) from the seeds in testdata. The BuildID slices returned are
// fresh copies.
package corefile
