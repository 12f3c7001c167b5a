package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestManifestUnit checks that a closed recording's manifest is the
// finished file's name, size and SHA-256, also after the size limit cut it.
func TestManifestUnit(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int64
	}{{"whole", 0}, {"cut at the size limit", 4 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r, err := Create(dir, "m.cast", Header{Width: 80, Height: 24}, WithMaxBytes(tc.max), WithFailureFunc(func(error) {}))
			if err != nil {
				t.Fatal(err)
			}
			for range 100 {
				r.Output([]byte(strings.Repeat("output ", 20) + "\r\n"))
			}
			if got := r.Manifest(); got != (Manifest{}) {
				t.Errorf("before Close: got %+v, want the zero manifest", got)
			}
			r.Close()
			m := r.Manifest()
			data, err := os.ReadFile(filepath.Join(dir, "m.cast"))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if m.Name != "m.cast" || m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) || m.Duration <= 0 || m.Duration > time.Minute {
				t.Errorf("got %+v, want m.cast, %d bytes, %x", m, len(data), sum)
			}
		})
	}
}
