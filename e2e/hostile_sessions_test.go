package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestHostileSessionsKillOthers: carol, not in session_control, cannot end
// bob's link: one line, the same as for an id that does not exist, and an
// audit event; bob's link goes on.
func TestHostileSessionsKillOthers(t *testing.T) {
	w := newSessionsWorld(t)
	live := w.background(t, w.bob, w.me+"@web-1", "while :; do echo tick; sleep 0.2; done")
	id := w.waitLink(t, w.bob, "bob")
	other := w.carol.ssh(t, nil, "bastion", "kill", id)
	unknown := w.carol.ssh(t, nil, "bastion", "kill", "local-0000000000000000")
	if other.Code == 0 || strings.Count(other.Stderr, "\n") != 1 || other.Stderr != unknown.Stderr {
		t.Errorf("kill of bob's link: got exit %d %q; unknown id %q; want the same one-line refusal", other.Code, other.Stderr, unknown.Stderr)
	}
	if !auditHas(t, w.b, "kill_refused", `"link_id":"`+id+`"`) {
		t.Errorf("audit log: no kill_refused for %s", id)
	}
	n := strings.Count(live.out.String(), "tick")
	waitFor(t, "bob's link to go on", 20*time.Second, func() bool { return strings.Count(live.out.String(), "tick") > n+2 })
}

// TestHostileSessionsKillHugeID: a 100 KB id and one with control
// characters are refused in one line, and audited clipped and escaped.
func TestHostileSessionsKillHugeID(t *testing.T) {
	w := newSessionsWorld(t)
	for _, id := range []string{strings.Repeat("x", 100<<10), "a\x1b[2Jb\x07c"} {
		r := w.bob.ssh(t, nil, "bastion", "kill", "'"+id+"'")
		if r.Code == 0 || !strings.Contains(r.Stderr, "bastion: no such session of yours") || strings.Count(r.Stderr, "\n") != 1 || strings.ContainsAny(r.Stderr, "\x1b\x07") || len(r.Stderr) > 200 {
			t.Errorf("kill %.20q: got exit %d stderr %.200q, want a short one-line refusal", id, r.Code, r.Stderr)
		}
	}
	for _, line := range w.b.AuditLines(t) {
		if strings.Contains(line, `"type":"kill_refused"`) && len(line) > 8<<10 {
			t.Errorf("kill_refused event of %d bytes: want the id clipped", len(line))
		}
	}
	if countType(t, w.b, "kill_refused") != 2 {
		t.Errorf("audit log: got %d kill_refused, want 2", countType(t, w.b, "kill_refused"))
	}
}

// TestHostileSessionsWatchOthers: carol, not in session_control, cannot
// watch bob's pty session: the same one line as for an unknown id, and an
// audit event; bob is not told of any watcher.
func TestHostileSessionsWatchOthers(t *testing.T) {
	w := newSessionsWorld(t)
	live := w.background(t, w.bob, "-tt", w.me+"@web-1", "sleep 300")
	id := w.waitLink(t, w.bob, "bob")
	other := w.carol.ssh(t, nil, "bastion", "watch", id)
	unknown := w.carol.ssh(t, nil, "bastion", "watch", "local-0000000000000000")
	if other.Code == 0 || strings.Count(other.Stderr, "\n") != 1 || other.Stderr != unknown.Stderr || other.Stdout != "" {
		t.Errorf("watch of bob's session: got exit %d %q %q; unknown id %q; want the same one-line refusal", other.Code, other.Stdout, other.Stderr, unknown.Stderr)
	}
	if !auditHas(t, w.b, "watch_refused", `"link_id":"`+id+`"`) {
		t.Errorf("audit log: no watch_refused for %s", id)
	}
	if strings.Contains(live.out.String(), "watching") {
		t.Errorf("bob's session: got %q, want no watch notice", live.out.String())
	}
}
