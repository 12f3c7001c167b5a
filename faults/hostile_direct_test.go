package faults

import (
	"strings"
	"testing"
	"unicode"
)

// TestHostileDirectTypedEscaped logs in in direct mode with target names
// and logins that carry terminal control sequences: the refusal the person
// is told quotes what they typed with its control characters escaped, never
// raw (a raw ESC could retitle or rewrite their terminal).
func TestHostileDirectTypedEscaped(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}}})
	for _, login := range []string{
		"+sim\x1b]0;owned\a",       // no OS user, a hostile target
		"+\x1b[2Jsim",              // no OS user
		e.me + "+no\x1b[31msuch",   // an unknown target
		e.me + "+sim\x00\x1b[1;1H", // NUL and a cursor move
	} {
		l, err := b.dial(login)
		if err != nil {
			t.Fatalf("login %q: %v", login, err)
		}
		// The login is the person's; the target in it is refused at the
		// first channel.
		_, err = l.outer.NewSession()
		l.close()
		if err == nil {
			t.Errorf("login %q: a session was opened", login)
			continue
		}
		msg := told(err, l)
		if msg == "" {
			t.Errorf("login %q: refused without a reason (%v)", login, err)
		}
		if i := strings.IndexFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }); i >= 0 {
			t.Errorf("login %q: the person is told %q, with a raw control character", login, msg)
		}
	}
}
