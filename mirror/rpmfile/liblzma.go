//go:build cgo && liblzma

package rpmfile

/*
#cgo LDFLAGS: -llzma
#include <stdlib.h>
#include <lzma.h>

typedef struct {
	lzma_ret ret;
	size_t in, out;
} step_result;

// step decodes from in into out and leaves the stream holding no pointer
// to either: both are Go memory, which C must not keep past the call.
static step_result step(lzma_stream *s, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	step_result r;
	r.ret = lzma_code(s, LZMA_RUN);
	r.in = in_len - s->avail_in;
	r.out = out_len - s->avail_out;
	s->next_in = NULL;
	s->avail_in = 0;
	s->next_out = NULL;
	s->avail_out = 0;
	return r;
}
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// HaveLiblzma reports that this build decodes xz with liblzma in process
// (built with -tags liblzma and cgo).
const HaveLiblzma = true

// lzmaReader decodes one xz stream with liblzma, reading its input from
// the bufio.Reader's buffer and writing straight into the caller's slice:
// no copy, no pipe, no process. Bytes after the stream stay unread in br.
// Its errors are plain; Decompress names the codec and the offset.
type lzmaReader struct {
	s   *C.lzma_stream // C memory: liblzma keeps its state there
	br  *bufio.Reader
	err error // sticky: io.EOF at the stream's end, or the failure
}

func newLiblzma(br *bufio.Reader) (io.ReadCloser, error) {
	s := (*C.lzma_stream)(C.calloc(1, C.sizeof_lzma_stream)) // zeroed is LZMA_STREAM_INIT
	if s == nil {
		return nil, &FormatError{Off: 0, Msg: "payload: xz: out of memory"}
	}
	// Single stream, as rpm writes; the memory limit repeats MaxWindow's
	// bound on the dictionary.
	if ret := C.lzma_stream_decoder(s, C.uint64_t(MaxWindow+(16<<20)), 0); ret != C.LZMA_OK {
		C.free(unsafe.Pointer(s))
		return nil, &FormatError{Off: 0, Msg: "payload: xz: " + lzmaError(ret)}
	}
	return &lzmaReader{s: s, br: br}, nil
}

func (z *lzmaReader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if z.br.Buffered() == 0 {
			if _, err := z.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				z.err = err
				return 0, err
			}
		}
		in, _ := z.br.Peek(z.br.Buffered())
		r := C.step(z.s, (*C.uint8_t)(unsafe.Pointer(&in[0])), C.size_t(len(in)),
			(*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)))
		z.br.Discard(int(r.in))
		switch r.ret {
		case C.LZMA_OK:
		case C.LZMA_STREAM_END:
			z.err = io.EOF
		default:
			z.err = errors.New(lzmaError(r.ret))
		}
		if r.out > 0 || z.err != nil {
			return int(r.out), z.err
		}
		// Input consumed without output (headers, a block boundary): feed more.
	}
}

// Close frees liblzma's state; the reader is unusable afterwards.
func (z *lzmaReader) Close() error {
	if z.s != nil {
		C.lzma_end(z.s)
		C.free(unsafe.Pointer(z.s))
		z.s = nil
		if z.err == nil {
			z.err = errClosed
		}
	}
	return nil
}

func lzmaError(ret C.lzma_ret) string {
	switch ret {
	case C.LZMA_MEM_ERROR:
		return "out of memory"
	case C.LZMA_MEMLIMIT_ERROR:
		return "dictionary larger than 256 MiB"
	case C.LZMA_FORMAT_ERROR:
		return "not an xz stream"
	case C.LZMA_OPTIONS_ERROR:
		return "unsupported options"
	case C.LZMA_DATA_ERROR:
		return "corrupt data"
	case C.LZMA_BUF_ERROR:
		return "truncated"
	}
	return fmt.Sprintf("liblzma error %d", int(ret))
}
