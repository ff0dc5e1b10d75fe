//go:build !(cgo && liblzma)

package rpmfile

import (
	"bufio"
	"errors"
	"io"
)

// HaveLiblzma reports that this build decodes xz with liblzma in process
// (built with -tags liblzma and cgo).
const HaveLiblzma = false

func newLiblzma(*bufio.Reader) (io.ReadCloser, error) {
	return nil, errors.New("payload: xz: this build has no liblzma (build with -tags liblzma)")
}
