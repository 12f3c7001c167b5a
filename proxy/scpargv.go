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

// parseSCPServer reports whether cmd is exactly the command line OpenSSH's
// scp -O asks the remote end to run, and returns what it asks.
//
// OpenSSH (scp.c, 9.x) builds it as "scp" followed by " -v", " -r", " -p"
// and " -d" as asked, then " -t " (upload) or " -f " (download), then "-- "
// when the path begins with '-', then the path (an empty path becomes
// "."). Other scp clients send the same flags in other orders, and -q, so
// the grammar is:
//
//	scp [-v] [-r] [-p] [-d] [-q] (-t|-f) [--] PATH
//
// with each optional flag at most once and in any order, words separated by
// single spaces, the bare program name "scp" (not a path: the OS user's
// PATH finds it, as for any scp), exactly one PATH that does not begin with
// '-' unless "--" comes first, and no shell metacharacter, control
// character or invalid UTF-8 anywhere. A path with spaces, globs or quotes
// is therefore refused as scp (it is an exec).
func parseSCPServer(cmd string) (scpServer, bool) {
	if !utf8.ValidString(cmd) {
		return scpServer{}, false
	}
	for _, r := range cmd {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || strings.ContainsRune(scpShellSpecial, r) {
			return scpServer{}, false
		}
	}
	words := strings.Split(cmd, " ")
	if len(words) < 3 || words[0] != "scp" {
		return scpServer{}, false
	}
	var s scpServer
	var seen [5]bool
	i := 1
flags:
	for ; i < len(words); i++ {
		switch w := words[i]; w {
		case "-t", "-f":
			s.sink = w == "-t"
			break flags
		default:
			// One of the flags -v -r -p -d -q, each at most once.
			if len(w) != 2 || w[0] != '-' {
				return scpServer{}, false
			}
			k := strings.IndexByte("vrpdq", w[1])
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
