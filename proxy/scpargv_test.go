package proxy

import (
	"strings"
	"testing"

	"bastion/config"
)

func TestParseSCPServer(t *testing.T) {
	tests := []struct {
		cmd  string
		ok   bool
		sink bool
		path string
	}{
		// What OpenSSH 9.x scp -O sends.
		{"scp -t /tmp/x", true, true, "/tmp/x"},
		{"scp -f /tmp/x", true, false, "/tmp/x"},
		{"scp -v -r -p -d -t /tmp/dir", true, true, "/tmp/dir"},
		{"scp -r -f dir", true, false, "dir"},
		{"scp -t .", true, true, "."},
		{"scp -t -- -odd", true, true, "-odd"},
		{"scp -p -f -- -odd", true, false, "-odd"},
		// Other clients' orders, and -q.
		{"scp -q -p -r -t x", true, true, "x"},
		{"scp -d -v -t x", true, true, "x"},
		{"scp -t café.txt", true, true, "café.txt"},
		// What libssh2 (curl's scp://) sends: run-together flags and a
		// single-quoted path, in which spaces and shell specials are
		// literal.
		{"scp -t '/tmp/x'", true, true, "/tmp/x"},
		{"scp -pf '/tmp/x'", true, false, "/tmp/x"},
		{"scp -pt '/tmp/my file;$(id)*'", true, true, "/tmp/my file;$(id)*"},
		{"scp -rt x", true, true, "x"},
		{"scp -v -pf -- '-odd'", true, false, "-odd"},
		// Not scp's remote end.
		{"scp 2>/dev/null; id", false, false, ""},
		{"scp -t x; id", false, false, ""},
		{"scp -t x && sh", false, false, ""},
		{"scp -t x|sh", false, false, ""},
		{"scp -t $(id)", false, false, ""},
		{"scp -t `id`", false, false, ""},
		{"scp -t 'x", false, false, ""},
		{"scp -t x'", false, false, ""},
		{"scp -t ''", false, false, ""},
		{"scp -t 'a'b'", false, false, ""},
		{"scp -t 'a' 'b'", false, false, ""},
		{"scp -t 'a'\\''b'", false, false, ""},
		{"scp -t 'a\\b'", false, false, ""},
		{"scp -t 'a!b'", false, false, ""},
		{"scp -t 'a\nb'", false, false, ""},
		{"scp -t 'a\x00b'", false, false, ""},
		{"scp -t '-odd'", false, false, ""},
		{"scp -t 'x';id", false, false, ""},
		{"scp -t x 'y'", false, false, ""},
		{"scp '-t' x", false, false, ""},
		{"scp; id -t 'x'", false, false, ""},
		{"scp -tf x", false, false, ""},
		{"scp -rr x", false, false, ""},
		{"scp -r -rt x", false, false, ""},
		{"scp -pt", false, false, ""},
		{"scp -t \"x\"", false, false, ""},
		{"scp -t x\nid", false, false, ""},
		{"scp -t x\rid", false, false, ""},
		{"scp -t x\tid", false, false, ""},
		{"scp -t x\x00id", false, false, ""},
		{"scp -t ~/x", false, false, ""},
		{"scp -t *.txt", false, false, ""},
		{"scp -t x#", false, false, ""},
		{"scp -t x\\", false, false, ""},
		{"scp -t {a,b}", false, false, ""},
		{"scp -t a b", false, false, ""},
		{"scp -t  x", false, false, ""},
		{"scp  -t x", false, false, ""},
		{"scp -t x ", false, false, ""},
		{" scp -t x", false, false, ""},
		{"scp -t -odd", false, false, ""},
		{"scp -t -- ", false, false, ""},
		{"scp -t --", false, false, ""},
		{"scp -t", false, false, ""},
		{"scp -t ", false, false, ""},
		{"scp -r -r -t x", false, false, ""},
		{"scp -S /tmp/evil -t x", false, false, ""},
		{"scp -o ProxyCommand=sh -t x", false, false, ""},
		{"scp -t -t x", false, false, ""},
		{"scp -t -f x", false, false, ""},
		{"scp -v -r", false, false, ""},
		{"/usr/bin/scp -t x", false, false, ""},
		{"/tmp/x/scp -t x", false, false, ""},
		{"SCP -t x", false, false, ""},
		{"scpx -t x", false, false, ""},
		{"scp", false, false, ""},
		{"", false, false, ""},
		{"scp -t \xff", false, false, ""},
		{"scp -t x\u0085", false, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			s, ok := parseSCPServer(tc.cmd)
			if ok != tc.ok || s.sink != tc.sink || s.path != tc.path {
				t.Errorf("got %v %+v, want %v sink=%v path=%q", ok, s, tc.ok, tc.sink, tc.path)
			}
			want := config.CapExec
			if tc.ok {
				want = config.CapSCP
			}
			if got := execCapability(tc.cmd); got != want {
				t.Errorf("execCapability: got %s, want %s", got, want)
			}
		})
	}
}

// FuzzSCPServer checks that whatever parseSCPServer accepts as scp's remote
// end is words a shell runs as one scp with one path: outside the one
// single-quoted path word, no shell metacharacter or control byte; inside
// it, nothing a shell reads in single quotes; single spaces, the bare
// program name, flag words only, and a path that scp cannot take for an
// option.
func FuzzSCPServer(f *testing.F) {
	for _, s := range []string{"scp -t /tmp/x", "scp -v -r -p -d -f -- -x", "scp 2>/dev/null; id", "scp -t a b", "scp -q -t x\n", "scp -pf '/tmp/a b'", "scp -t 'x'\\''y'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		s, ok := parseSCPServer(cmd)
		if !ok {
			return
		}
		head, path := cmd, ""
		if strings.HasSuffix(cmd, "'") {
			i := strings.LastIndex(cmd[:len(cmd)-1], "'")
			if i < 1 || cmd[i-1] != ' ' {
				t.Fatalf("accepted %q: a quote that does not open the last word", cmd)
			}
			head, path = cmd[:i-1], cmd[i+1:len(cmd)-1]
			if strings.ContainsAny(path, "'\\!\t\n\r\x00\x7f") {
				t.Fatalf("accepted %q: the quoted path holds what a shell reads", cmd)
			}
		}
		if strings.ContainsAny(head, scpShellSpecial+"\t\n\r\x00\x7f") {
			t.Fatalf("accepted %q with a shell metacharacter", cmd)
		}
		words := strings.Split(head, " ")
		if strings.Join(strings.Fields(head), " ") != head || words[0] != "scp" {
			t.Fatalf("accepted %q: not single-spaced words starting with scp", cmd)
		}
		if path == "" {
			path, words = words[len(words)-1], words[:len(words)-1]
		}
		if path != s.path || s.path == "" {
			t.Fatalf("accepted %q with path %q, want %q", cmd, s.path, path)
		}
		if len(words) < 2 {
			t.Fatalf("accepted %q without a mode", cmd)
		}
		mode := words[len(words)-1]
		if mode == "--" {
			mode, words = words[len(words)-2], words[:len(words)-1]
		} else if strings.HasPrefix(s.path, "-") {
			t.Fatalf("accepted %q: path %q would be an option", cmd, s.path)
		}
		if !strings.HasSuffix(mode, "t") && !strings.HasSuffix(mode, "f") || strings.HasSuffix(mode, "t") != s.sink {
			t.Fatalf("accepted %q: mode %q, sink %v", cmd, mode, s.sink)
		}
		for _, w := range words[1:] {
			if len(w) < 2 || w[0] != '-' || strings.Trim(w[1:], "vrpdqtf") != "" {
				t.Fatalf("accepted %q with operand %q", cmd, w)
			}
		}
	})
}
