package federate

import (
	"encoding/hex"
	"os"

	"github.com/retraced/retraced/index/elfnote"
)

func buildID(f *os.File) (string, error) {
	b, err := elfnote.BuildID(f)
	return hex.EncodeToString(b), err
}
