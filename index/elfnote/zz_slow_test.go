package elfnote

import (
	"bytes"
	"math/rand"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestZZSlow(t *testing.T) {
	seeds := []string{"testdata/tiny", "testdata/libtiny.so", "testdata/tiny.debug", "testdata/tiny-nobuildid"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200000; i++ {
		data, _ := os.ReadFile(seeds[rng.Intn(len(seeds))])
		for k := 0; k < 1+rng.Intn(4); k++ {
			switch rng.Intn(3) {
			case 0:
				data[rng.Intn(len(data))] = byte(rng.Intn(256))
			case 1:
				p := rng.Intn(min(64, len(data)))
				data[p] = byte(rng.Intn(256))
			case 2:
				data = data[:rng.Intn(len(data))]
			}
			if len(data) == 0 {
				break
			}
		}
		done := make(chan bool)
		go func() {
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				os.WriteFile("/tmp/slow.bin", data, 0o644)
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				os.Stderr.Write(buf[:n])
				os.Exit(3)
			}
		}()
		BuildID(bytes.NewReader(data))
		close(done)
	}
}
