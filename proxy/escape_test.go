package proxy

import (
	"strings"
	"testing"
	"unicode"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"web-1", "web-1"},
		{"Café ünïcode 名前", "Café ünïcode 名前"},
		{`back\slash`, `back\slash`},
		{"two\nlines", `two\nlines`},
		{"cr\rtab\t", `cr\rtab\t`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"line\u2028sep", `line\u2028sep`},
		{"csi\u009bx", `csi\u009bx`},
		{"tag\U000e0041", `tag\U000e0041`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := printable(tc.in)
			if got != tc.want {
				t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
			}
			for _, r := range got {
				if !unicode.IsPrint(r) {
					t.Errorf("printable(%q) = %q holds the non-printable %U", tc.in, got, r)
				}
			}
			if strings.ContainsAny(got, "\n\r\x1b") {
				t.Errorf("printable(%q) = %q holds a line break or escape", tc.in, got)
			}
		})
	}
}
