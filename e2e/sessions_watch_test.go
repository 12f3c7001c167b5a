package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSessionsWatch: bob (ops) watches carol's pty session and sees what
// it prints; carol is told once who watches; Ctrl-C ends the watch, and
// carol's session goes on.
func TestSessionsWatch(t *testing.T) {
	w := newSessionsWorld(t)
	watched := w.background(t, w.carol, "-tt", w.me+"@web-1", "while :; do echo tick-tock; sleep 0.2; done")
	id := w.waitLink(t, w.bob, "carol")
	waitFor(t, "carol's session to print", 20*time.Second, func() bool { return strings.Contains(watched.out.String(), "tick-tock") })

	cmd := exec.Command("ssh", "-F", w.bob.ConfigPath, "-tt", "bastion", "watch", id)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	watcher := startProcess(t, cmd)
	waitFor(t, "the watcher to see carol's output", 30*time.Second, func() bool { return strings.Contains(watcher.out.String(), "tick-tock") })
	waitFor(t, "carol to be told", 20*time.Second, func() bool {
		return strings.Contains(watched.out.String(), "bastion: session_control user bob is watching this session")
	})
	if n := strings.Count(watched.out.String(), "is watching this session"); n != 1 {
		t.Errorf("carol was told %d times, want once", n)
	}
	in.Write([]byte("rm -rf /\r\x03"))
	select {
	case <-watcher.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the watch did not end on Ctrl-C")
	}
	waitFor(t, "the watch to be audited", 20*time.Second, func() bool {
		return auditHas(t, w.b, "watch_start", `"link_id":"`+id+`"`) && auditHas(t, w.b, "watch_end", `"link_id":"`+id+`"`)
	})
	n := strings.Count(watched.out.String(), "tick-tock")
	waitFor(t, "carol's session to go on", 20*time.Second, func() bool { return strings.Count(watched.out.String(), "tick-tock") > n+2 })
	if strings.Contains(watched.out.String(), "rm -rf") {
		t.Errorf("the watcher's input reached carol's session: %q", watched.out.String())
	}
}
