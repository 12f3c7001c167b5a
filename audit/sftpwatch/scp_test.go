package sftpwatch

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// swapped turns an SCP into an observer whose FromClient is the source's
// side: tests write scp sessions as steps with client meaning "source".
type swapped struct{ s *SCP }

func (o swapped) FromClient(p []byte) { o.s.FromServer(p) }
func (o swapped) FromServer(p []byte) { o.s.FromClient(p) }
func (o swapped) Close()              { o.s.Close() }

// src and sink build steps of the source and the sink.
func src(parts ...string) step  { return step{client: true, b: []byte(strings.Join(parts, ""))} }
func sink(parts ...string) step { return step{client: false, b: []byte(strings.Join(parts, ""))} }

// newSCPObserver returns an SCP for direction and the observer that feeds
// it source-as-client steps.
func newSCPObserver(t *testing.T, direction string, report func(SCPOp)) (*SCP, observer) {
	t.Helper()
	cmd := "scp -t /t"
	if direction == Download {
		cmd = "scp -f /t"
	}
	s, ok := NewSCP(cmd, report)
	if !ok {
		t.Fatalf("NewSCP(%q): got false, want true", cmd)
	}
	if direction == Download {
		return s, swapped{s}
	}
	return s, s
}

func TestSCP(t *testing.T) {
	tests := []struct {
		name     string
		steps    []step
		want     []SCPOp
		anyOrder bool
	}{
		{
			name: "files, directories and errors",
			steps: []step{
				sink("\x00"),
				src("C0644 5 a.txt\n"), sink("\x00"), src("hello\x00"), sink("\x00"),
				src("D0755 0 sub\n"), sink("\x00"),
				src("T1700000000 0 1700000000 0\n"), sink("\x00"),
				src("C0600 3 b\n"), sink("\x00"), src("abc", "\x00"), sink("\x00"),
				src("D0700 0 deeper\n"), sink("\x00"),
				src("C0644 1 c\n"), sink("\x00"), src("z\x00"), sink("\x00"),
				src("E\n"), sink("\x00"),
				src("E\n"), sink("\x00"),
				src("C0644 4 blocked\n"), sink("\x01scp: /t/blocked: Is a directory\n"),
				src("C0644 0 empty\n"), sink("\x00"), src("\x00"), sink("\x00"),
				src("\x01scp: /src/unreadable: Permission denied\n"),
				src("C0644 6 bad\n"), sink("\x00"), src("xxxxxx", "\x01scp: /src/bad: read error\n"), sink("\x00"),
				src("C0644 3 full\n"), sink("\x00"), src("abc\x00"), sink("\x01scp: /t/full: No space left on device\n"),
				src("D0700 0 nodir\n"), sink("\x01scp: /t/nodir: Permission denied\n"),
				src("C0640 2 last\n"), sink("\x00"), src("\n\n\x00"), sink("\x00"),
			},
			want: []SCPOp{
				{Kind: "file", Path: "a.txt", Mode: 0o644, Size: 5, Bytes: 5, Status: "ok"},
				{Kind: "dir", Path: "sub", Mode: 0o755, Status: "ok"},
				{Kind: "file", Path: "sub/b", Mode: 0o600, Size: 3, Bytes: 3, Status: "ok"},
				{Kind: "dir", Path: "sub/deeper", Mode: 0o700, Status: "ok"},
				{Kind: "file", Path: "sub/deeper/c", Mode: 0o644, Size: 1, Bytes: 1, Status: "ok"},
				{Kind: "file", Path: "blocked", Mode: 0o644, Size: 4, Status: "scp: /t/blocked: Is a directory"},
				{Kind: "file", Path: "empty", Mode: 0o644, Status: "ok"},
				{Kind: "error", Status: "scp: /src/unreadable: Permission denied"},
				{Kind: "file", Path: "bad", Mode: 0o644, Size: 6, Bytes: 6, Status: "scp: /src/bad: read error"},
				{Kind: "file", Path: "full", Mode: 0o644, Size: 3, Bytes: 3, Status: "scp: /t/full: No space left on device"},
				{Kind: "dir", Path: "nodir", Mode: 0o700, Status: "scp: /t/nodir: Permission denied"},
				{Kind: "file", Path: "last", Mode: 0o640, Size: 2, Bytes: 2, Status: "ok"},
			},
			anyOrder: true,
		},
		{
			name:  "sink refuses to start",
			steps: []step{sink("\x01scp: /t: Not a directory\n")},
			want:  []SCPOp{{Kind: "error", Status: "scp: /t: Not a directory"}},
		},
		{
			name: "session cut during contents",
			steps: []step{sink("\x00"),
				src("C0644 10 a\n"), sink("\x00"), src("hello"),
			},
			want:     []SCPOp{{Kind: "file", Path: "a", Mode: 0o644, Size: 10, Bytes: 5, Aborted: true}},
			anyOrder: true,
		},
		{
			name:     "session cut before the answer",
			steps:    []step{sink("\x00"), src("D0755 0 d\n"), sink("\x00"), src("C0644 10 a\n")},
			want:     []SCPOp{{Kind: "dir", Path: "d", Mode: 0o755, Status: "ok"}, {Kind: "file", Path: "d/a", Mode: 0o644, Size: 10, Aborted: true}},
			anyOrder: true,
		},
		{
			name: "session cut before the last answer",
			steps: []step{sink("\x00"),
				src("C0644 2 a\n"), sink("\x00"), src("hi\x00"),
			},
			want:     []SCPOp{{Kind: "file", Path: "a", Mode: 0o644, Size: 2, Bytes: 2, Aborted: true}},
			anyOrder: true,
		},
		{
			name: "source gives up fatally",
			steps: []step{sink("\x00"),
				src("C0644 2 a\n"), sink("\x00"), src("hi\x02scp: gone\n"), src("C0644 2 b\n"),
			},
			want: []SCPOp{{Kind: "file", Path: "a", Mode: 0o644, Size: 2, Bytes: 2, Status: "scp: gone"}},
		},
		{
			name:  "not scp",
			steps: []step{sink("\x00"), src("Last login: today\n")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "source sent no scp record"}},
		},
		{
			name:  "sink sends junk",
			steps: []step{sink("\x00"), src("C0644 1 a\n"), sink("?")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "sink sent no scp answer"}},
		},
		{
			name:  "bad mode",
			steps: []step{sink("\x00"), src("C0648 1 a\n")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "malformed scp record"}},
		},
		{
			name:  "no name",
			steps: []step{sink("\x00"), src("C0644 1 \n")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "malformed scp record"}},
		},
		{
			name:  "empty record",
			steps: []step{sink("\x00"), src("\n")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "empty scp record"}},
		},
		{
			name:  "record too long",
			steps: []step{sink("\x00"), src("C0644 1 ", strings.Repeat("n", maxLine))},
			want:  []SCPOp{{Kind: "unparsed", Reason: "scp record too long"}},
		},
		{
			name:  "message too long",
			steps: []step{sink("\x01", strings.Repeat("m", maxLine+1))},
			want:  []SCPOp{{Kind: "unparsed", Reason: "scp message too long"}},
		},
		{
			name:  "no status after contents",
			steps: []step{sink("\x00"), src("C0644 1 a\n"), sink("\x00"), src("xQ")},
			want:  []SCPOp{{Kind: "unparsed", Reason: "no status byte after file contents"}},
		},
		{
			name: "directories too deep",
			steps: func() []step {
				steps := []step{sink("\x00")}
				for range maxPath/101 + 1 {
					steps = append(steps, src("D0755 0 ", strings.Repeat("d", 100), "\n"), sink("\x00"))
				}
				return steps
			}(),
			want: func() []SCPOp {
				var want []SCPOp
				p := ""
				for range maxPath / 101 {
					p += "/" + strings.Repeat("d", 100)
					want = append(want, SCPOp{Kind: "dir", Path: p[1:], Mode: 0o755, Status: "ok"})
				}
				return append(want, SCPOp{Kind: "unparsed", Reason: "scp directories nested too deep"})
			}(),
		},
	}
	for _, direction := range []string{Upload, Download} {
		for _, tc := range tests {
			t.Run(direction+"/"+tc.name, func(t *testing.T) {
				want := make([]SCPOp, len(tc.want))
				for i, op := range tc.want {
					op.Direction = direction
					want[i] = op
				}
				feedings := orderedFeedings(tc.steps)
				if tc.anyOrder {
					feedings = append(feedings, splitFeedings(tc.steps, true)...)
					feedings = append(feedings, splitFeedings(tc.steps, false)...)
				}
				for _, f := range feedings {
					var got []SCPOp
					s, o := newSCPObserver(t, direction, func(op SCPOp) { got = append(got, op) })
					f.feed(o, tc.steps)
					s.Close()
					s.FromClient([]byte("\x00"))
					s.Close()
					if !reflect.DeepEqual(noSCPContent(got), want) {
						t.Fatalf("%s: got\n%swant\n%s", f.name, opsString(got), opsString(want))
					}
				}
			})
		}
	}
}

// TestSCPLag checks the sink's answers lagging behind the source by more
// than the SCP holds back: exact when the sink said yes, one "unparsed"
// when it had refused.
func TestSCPLag(t *testing.T) {
	big := strings.Repeat("x", 3*maxLookahead)
	tests := []struct {
		name  string
		steps []step
		want  []SCPOp
	}{
		{
			name: "accepted",
			steps: []step{sink("\x00"),
				src("C0644 ", strconv.Itoa(len(big)), " big\n"), sink("\x00"), src(big, "\x00"), sink("\x00"),
				src("C0644 1 small\n"), sink("\x00"), src("s\x00"), sink("\x00"),
			},
			want: []SCPOp{
				{Kind: "file", Direction: Upload, Path: "big", Mode: 0o644, Size: int64(len(big)), Bytes: int64(len(big)), Status: "ok"},
				{Kind: "file", Direction: Upload, Path: "small", Mode: 0o644, Size: 1, Bytes: 1, Status: "ok"},
			},
		},
		{
			// The refused file's announced size covers the next record and
			// its contents, so the guess parses until the refusal shows.
			name: "refused",
			steps: []step{sink("\x00"),
				src("C0644 70014 refused\n"), sink("\x01scp: no\n"),
				src("C0644 70000 b\n"), sink("\x00"), src(strings.Repeat("b", 70000), "\x00"), sink("\x00"),
			},
			want: []SCPOp{
				{Kind: "unparsed", Direction: Upload, Reason: "sink refused a file whose contents were assumed to follow"},
			},
		},
		{
			name: "refused, then garbage",
			steps: []step{sink("\x00"),
				src("C0644 10 refused\n"), sink("\x01scp: no\n"),
				src("C0644 ", strconv.Itoa(len(big)), " big\n"), sink("\x00"), src(big, "\x00"), sink("\x00"),
			},
			want: []SCPOp{
				{Kind: "unparsed", Direction: Upload, Reason: "no status byte after file contents"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1 << 10, 32 << 10, 1 << 20} {
				var got []SCPOp
				s, _ := NewSCP("scp -t /t", func(op SCPOp) { got = append(got, op) })
				client, server := streams(tc.steps)
				feedChunks(s.FromClient, client, chunk)
				feedChunks(s.FromServer, server, chunk)
				s.Close()
				if !reflect.DeepEqual(noSCPContent(got), tc.want) {
					t.Fatalf("chunks of %d: got\n%swant\n%s", chunk, opsString(got), opsString(tc.want))
				}
				if cap(s.look) > maxLookahead || cap(s.spare) > maxLookahead {
					t.Errorf("got lookahead capacity %d and %d, want at most %d", cap(s.look), cap(s.spare), maxLookahead)
				}
			}
		})
	}
}

func TestNewSCP(t *testing.T) {
	tests := []struct {
		command string
		want    string // direction, or "" for not scp -t/-f
	}{
		{"scp -t /tmp/x", Upload},
		{"scp -f -r dir", Download},
		{"scp -r -d -t -- /tmp", Upload},
		{"/usr/bin/scp -v -p -t .", Upload},
		{"scp -prt dir", Upload},
		{"scp -f", Download},
		{"scp -l 100 -f x", Download},
		{"scp -oFoo=bar -t x", Upload},
		{"scp -o Foo=-t x", ""},
		{"'scp' -t 'a b'", Upload},
		{`scp -t "a \"b\" c"`, Upload},
		{`scp\ -t x`, ""},
		{"scp -t 'unterminated", ""},
		{"scp -t -f x", ""},
		{"scp x y", ""},
		{"scp -- -t", ""},
		{"sftp -t x", ""},
		{"rsync --server -t .", ""},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.command, func(t *testing.T) {
			s, ok := NewSCP(tc.command, func(SCPOp) {})
			got := ""
			if ok {
				got = s.direction
			}
			if got != tc.want || ok != (s != nil) {
				t.Errorf("NewSCP(%q): got %q (ok %v), want %q", tc.command, got, ok, tc.want)
			}
		})
	}
}

func TestShellSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"a b\tc\n", []string{"a", "b", "c"}, true},
		{`'a b' "c d" e\ f`, []string{"a b", "c d", "e f"}, true},
		{`"a\"b\\c\d"`, []string{`a"b\c\d`}, true},
		{`''`, []string{""}, true},
		{`a'b'"c"`, []string{"abc"}, true},
		{`"open`, nil, false},
		{`'open`, nil, false},
		{`trailing\`, []string{"trailing"}, true},
	}
	for _, tc := range tests {
		got, ok := shellSplit(tc.in)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("shellSplit(%q): got %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
