package diskspace

import (
	"bytes"
	"io"
	"os"
)

// copyBlock is the unit Copy reads, and the smallest hole it leaves.
const copyBlock = 64 << 10

// checkEvery is how many bytes Copy writes between two checks of the
// policy.
var checkEvery int64 = 16 << 20 // a variable for tests

var zeroBlock = make([]byte, copyBlock)

// Copy copies src to its end into dst, a new file opened for writing at
// offset 0, and returns the bytes copied. Blocks of zeros are not
// written but skipped, leaving holes (a core's untouched pages, a sparse
// archive member), so what an upload costs on disk is what it holds, not
// what it claims. Before it starts and every 16 MiB it writes, Copy asks
// the policy (a nil p asks nothing) and stops with a *LowError (ErrLow)
// when the minimum would no longer be free. A read error is returned as
// it is; a write error is wrapped in *os.PathError by the file.
func (p *Policy) Copy(dst *os.File, src io.Reader) (int64, error) {
	if err := p.Check(0); err != nil {
		return 0, err
	}
	buf := make([]byte, copyBlock)
	var total, sinceCheck int64
	hole := false // the file ends in a hole not yet sized
	for {
		n, rerr := fill(src, buf)
		if n > 0 {
			b := buf[:n]
			if bytes.Equal(b, zeroBlock[:n]) {
				if _, err := dst.Seek(int64(n), io.SeekCurrent); err != nil {
					return total, err
				}
				hole = true
			} else {
				if _, err := dst.Write(b); err != nil {
					return total, err
				}
				hole = false
				if sinceCheck += int64(n); sinceCheck >= checkEvery {
					sinceCheck = 0
					if err := p.Check(0); err != nil {
						return total, err
					}
				}
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return total, rerr
		}
	}
	if hole {
		if err := dst.Truncate(total); err != nil {
			return total, err
		}
	}
	return total, nil
}

// fill reads into buf until it is full or src fails; io.EOF means src
// ended (after the n bytes returned). Unlike io.ReadFull it passes src's
// own io.ErrUnexpectedEOF on (a truncated stream is an error here).
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
