package audit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	long := strings.Repeat("a", 200_000)
	cases := []struct {
		name, in string
		cut      bool
	}{
		{"empty", "", false},
		{"short", "web-1", false},
		{"at the limit", strings.Repeat("b", MaxFieldLen), false},
		{"one over", strings.Repeat("b", MaxFieldLen+1), true},
		{"huge", long, true},
		{"multibyte at the cut", strings.Repeat("é", MaxFieldLen), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Clip(tc.in)
			if !tc.cut {
				if got != tc.in {
					t.Fatalf("got %q, want it unchanged", got)
				}
				return
			}
			if !strings.HasSuffix(got, clipMarker) {
				t.Fatalf("got %q, want the marker at the end", got)
			}
			if len(got) > MaxFieldLen+len(clipMarker) {
				t.Fatalf("got %d bytes, want at most %d", len(got), MaxFieldLen+len(clipMarker))
			}
			if !utf8.ValidString(got) {
				t.Fatalf("got invalid UTF-8 %q", got)
			}
			if !strings.HasPrefix(tc.in, strings.TrimSuffix(got, clipMarker)) {
				t.Fatalf("got %q, want a prefix of the input", got)
			}
		})
	}
}
