package proxy

import (
	"strings"
	"unicode/utf8"
)

// scpServer is the remote end of a legacy scp transfer (scp -O), as
// parsed by parseSCPServer.
type scpServer struct {
	// sink is true for -t (the instance receives), false for -f.
	sink bool
	// path is the one path operand.
	path string
}

// scpShellSpecial are the bytes that mean something to a POSIX shell (or to
// csh, fish and the old Bourne shell's ^ pipe) anywhere in a word. The
// remote end runs the exec command line through the OS user's shell, so a
// command line holding any of them is not "just scp".
const scpShellSpecial = ";&|<>$`\\\"'(){}*?[]~!#^="

// parseSCPServer reports whether cmd is exactly the command line a
// legacy scp client (scp -O) asks the remote end to run, and returns what
// it asks.
//
// OpenSSH (scp.c, 9.x) builds it as "scp" followed by " -v", " -r", " -p"
// and " -d" as asked, then " -t " (upload) or " -f " (download), then "-- "
// when the path begins with '-', then the path (an empty path becomes
// "."). Other scp clients send the same flags in other orders, and -q;
// libssh2 (curl's scp://) runs them together with the mode ("-pf") and
// single-quotes the path. So the grammar is:
//
//	scp FLAGS [--] PATH
//
// where FLAGS is separate words from -v -r -p -d -q and then -t or -f, or
// those letters run together in one word ending in t or f, each letter at
// most once; words are separated by single spaces; the program is the bare
// name "scp" (not a path: the OS user's PATH finds it, as for any scp);
// and there is exactly one PATH, which does not begin with '-' unless "--"
// comes first. Outside quotes, no shell metacharacter, control character
// or invalid UTF-8 may appear anywhere. A PATH may instead be one
// single-quoted word, 'PATH', holding anything but a quote, a backslash
// (fish reads escapes inside single quotes), '!' (csh history) or a
// control character: every shell then passes it to scp literally. Any
// other path with spaces, globs or quotes is refused as scp (it is an
// exec).
func parseSCPServer(cmd string) (scpServer, bool) {
	if !utf8.ValidString(cmd) {
		return scpServer{}, false
	}
	head, quoted := cmd, ""
	if i := strings.Index(cmd, " '"); i >= 0 {
		head, quoted = cmd[:i], cmd[i+1:]
		inner, ok := strings.CutPrefix(quoted, "'")
		inner, ok2 := strings.CutSuffix(inner, "'")
		if !ok || !ok2 || inner == "" || strings.ContainsAny(inner, "'\\!") || hasControl(inner) {
			return scpServer{}, false
		}
		quoted = inner
	}
	if hasControl(head) || strings.ContainsAny(head, scpShellSpecial) {
		return scpServer{}, false
	}
	words := strings.Split(head, " ")
	if quoted != "" {
		words = append(words, quoted)
	}
	if len(words) < 3 || words[0] != "scp" {
		return scpServer{}, false
	}
	var s scpServer
	var seen [5]bool
	i := 1
flags:
	for ; i < len(words); i++ {
		w := words[i]
		if len(w) < 2 || w[0] != '-' || w == "--" {
			return scpServer{}, false
		}
		for j := 1; j < len(w); j++ {
			if j == len(w)-1 && (w[j] == 't' || w[j] == 'f') {
				s.sink = w[j] == 't'
				break flags
			}
			// One of the flags -v -r -p -d -q, each at most once.
			k := strings.IndexByte("vrpdq", w[j])
			if k < 0 || seen[k] {
				return scpServer{}, false
			}
			seen[k] = true
		}
	}
	if i >= len(words) {
		return scpServer{}, false
	}
	rest := words[i+1:]
	if len(rest) == 2 && rest[0] == "--" {
		rest = rest[1:]
	} else if len(rest) == 1 && strings.HasPrefix(rest[0], "-") {
		return scpServer{}, false
	}
	if len(rest) != 1 || rest[0] == "" {
		return scpServer{}, false
	}
	s.path = rest[0]
	return s, true
}

// hasControl reports whether s holds a C0 or C1 control character or DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return true
		}
	}
	return false
}
