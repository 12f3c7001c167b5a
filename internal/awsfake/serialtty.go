package awsfake

import (
	"io"
	"strings"
)

// maxConsoleLine bounds one line typed at the console.
const maxConsoleLine = 1024

// ttyS0 is the simulated instance's serial console: a getty login prompt
// and, once a user name is typed (the simulated instance asks no
// password), a small shell. Like a terminal in cooked mode it echoes what
// is typed, erases on DEL or backspace, and ends a line on CR or LF.
type ttyS0 struct {
	w    io.Writer
	name string
	// user is who is logged in; empty at the login prompt.
	user string
	line []byte
	// lastCR is set after a CR, so that the LF of a CRLF is no second
	// line end.
	lastCR bool
}

// run shows the banner and the login prompt, then reads keys from r until
// it ends or the person logs out with Ctrl-D at the login prompt.
func (t *ttyS0) run(r io.Reader) {
	t.write("\r\nAmazon Linux 2023 (bastion awsfake)\r\nKernel 6.1.0-fake on an x86_64 (ttyS0)\r\n\r\n")
	t.prompt()
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if !t.key(b) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// key handles one typed byte and reports whether the console goes on.
func (t *ttyS0) key(b byte) bool {
	cr := t.lastCR
	t.lastCR = b == '\r'
	switch {
	case b == '\n' && cr:
	case b == '\r' || b == '\n':
		t.write("\r\n")
		line := string(t.line)
		t.line = t.line[:0]
		t.enter(line)
	case b == 0x7f || b == 0x08:
		if len(t.line) > 0 {
			t.line = t.line[:len(t.line)-1]
			t.write("\b \b")
		}
	case b == 0x03:
		t.write("^C\r\n")
		t.line = t.line[:0]
		t.prompt()
	case b == 0x04 && len(t.line) == 0:
		if t.user == "" {
			return false
		}
		t.write("logout\r\n")
		t.logout()
	case b >= 0x20 && len(t.line) < maxConsoleLine:
		t.line = append(t.line, b)
		t.w.Write([]byte{b})
	}
	return true
}

// enter runs a finished line: a user name at the login prompt, else a
// command.
func (t *ttyS0) enter(line string) {
	if t.user == "" {
		if u := strings.TrimSpace(line); u != "" {
			t.user = u
			t.write("Last login: on ttyS0\r\n")
		}
		t.prompt()
		return
	}
	args := strings.Fields(line)
	switch {
	case len(args) == 0:
	case args[0] == "exit" || args[0] == "logout":
		t.logout()
		return
	case args[0] == "echo":
		t.write(strings.Join(args[1:], " ") + "\r\n")
	case args[0] == "hostname":
		t.write(t.name + "\r\n")
	case args[0] == "whoami":
		t.write(t.user + "\r\n")
	case args[0] == "uname":
		t.write("Linux\r\n")
	case args[0] == "tty":
		t.write("/dev/ttyS0\r\n")
	default:
		t.write("-bash: " + args[0] + ": command not found\r\n")
	}
	t.prompt()
}

// logout returns to the login prompt.
func (t *ttyS0) logout() {
	t.user = ""
	t.write("\r\n")
	t.prompt()
}

// prompt writes the login prompt or the shell's.
func (t *ttyS0) prompt() {
	switch t.user {
	case "":
		t.write(t.name + " login: ")
	case "root":
		t.write("[root@" + t.name + " ~]# ")
	default:
		t.write("[" + t.user + "@" + t.name + " ~]$ ")
	}
}

func (t *ttyS0) write(s string) { io.WriteString(t.w, s) }
