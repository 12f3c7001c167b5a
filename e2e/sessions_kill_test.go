package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sessionsWorld is a bastion in front of a real sshd (static target
// web-1) with bob in the session_control group ops and carol in dev.
type sessionsWorld struct {
	b          *bastionProc
	bob, carol *client
	me         string
}

func newSessionsWorld(t *testing.T) *sessionsWorld {
	t.Helper()
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	bobKey, carolKey := newKey(t, dir, "bob"), newKey(t, dir, "carol")
	body := fmt.Sprintf("users:\n  - {name: bob, keys: [%q], groups: [ops]}\n  - {name: carol, keys: [%q], groups: [dev]}\n", bobKey.AuthorizedKey(), carolKey.AuthorizedKey()) +
		"providers:\n  static:\n" +
		fmt.Sprintf("    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}\n", up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()) +
		"policies:\n  - {groups: [ops, dev], targets: [\"*\"], os_users: [\"*\"]}\n" +
		"session_control: {groups: [ops]}\n"
	b := startBastion(t, body)
	return &sessionsWorld{b: b, bob: newClient(t, b, "bob", bobKey), carol: newClient(t, b, "carol", carolKey), me: me}
}

// background starts a jump session of c running command.
func (w *sessionsWorld) background(t *testing.T, c *client, args ...string) *process {
	t.Helper()
	all := append([]string{"-F", c.ConfigPath, "-J", "bastion"}, args...)
	return startProcess(t, exec.Command("ssh", all...))
}

// linkIDOf returns the id of user's first link in a `sessions` listing.
func linkIDOf(listing, user string) string {
	for _, line := range strings.Split(listing, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == user {
			return f[0]
		}
	}
	return ""
}

// waitLink waits until c's `sessions` lists a link of user, and returns
// its id.
func (w *sessionsWorld) waitLink(t *testing.T, c *client, user string) string {
	t.Helper()
	var id string
	waitFor(t, user+"'s link to be listed", 30*time.Second, func() bool {
		r := c.ssh(t, nil, "bastion", "sessions")
		id = linkIDOf(r.Stdout, user)
		return r.Code == 0 && id != ""
	})
	return id
}

// TestSessionsListing: an ops user lists carol's live link with its
// target and OS user; carol sees her own only, and not bob's.
func TestSessionsListing(t *testing.T) {
	w := newSessionsWorld(t)
	w.background(t, w.carol, w.me+"@web-1", "sleep 300")
	w.background(t, w.bob, w.me+"@web-1", "sleep 300")
	id := w.waitLink(t, w.bob, "carol")
	r := w.bob.ssh(t, nil, "bastion", "sessions")
	if !strings.Contains(r.Stdout, "web-1") || !strings.Contains(r.Stdout, w.me) || linkIDOf(r.Stdout, "bob") == "" {
		t.Errorf("bob's listing: got %q, want carol's and bob's links to web-1 as %s", r.Stdout, w.me)
	}
	r = w.carol.ssh(t, nil, "bastion", "sessions")
	if linkIDOf(r.Stdout, "carol") != id || linkIDOf(r.Stdout, "bob") != "" {
		t.Errorf("carol's listing: got %q, want her own link %s only", r.Stdout, id)
	}
	if countType(t, w.b, "sessions_listed") < 2 {
		t.Errorf("audit log: want a sessions_listed event per listing")
	}
}

// TestSessionsKill: bob (ops) ends carol's link from another connection;
// it ends within 2 s with the reason on carol's stderr, audited.
func TestSessionsKill(t *testing.T) {
	w := newSessionsWorld(t)
	victim := w.background(t, w.carol, w.me+"@web-1", "sleep 300")
	id := w.waitLink(t, w.bob, "carol")
	r := w.bob.ssh(t, nil, "bastion", "kill", id)
	if r.Code != 0 {
		t.Fatalf("kill: got exit %d %q %q, want success", r.Code, r.Stdout, r.Stderr)
	}
	select {
	case <-victim.done:
	case <-time.After(2 * time.Second):
		t.Fatal("carol's link still runs 2 s after the kill")
	}
	if out := victim.out.String(); !strings.Contains(out, "bastion: ended by session_control user bob") {
		t.Errorf("carol's stderr: got %q, want the kill reason", out)
	}
	if !auditHas(t, w.b, "session_killed", `"link_id":"`+id+`"`) {
		t.Errorf("audit log: no session_killed for %s", id)
	}
}

// TestSessionsKillOwn: carol, not in session_control, ends her own link.
func TestSessionsKillOwn(t *testing.T) {
	w := newSessionsWorld(t)
	victim := w.background(t, w.carol, w.me+"@web-1", "sleep 300")
	id := w.waitLink(t, w.carol, "carol")
	if r := w.carol.ssh(t, nil, "bastion", "kill", id); r.Code != 0 {
		t.Fatalf("kill: got exit %d %q, want success", r.Code, r.Stderr)
	}
	select {
	case <-victim.done:
	case <-time.After(2 * time.Second):
		t.Fatal("carol's link still runs 2 s after her kill")
	}
	if out := victim.out.String(); !strings.Contains(out, "bastion: ended by carol") {
		t.Errorf("carol's stderr: got %q, want the kill reason", out)
	}
}

// TestSessionsKillDirect: a direct-mode link (me+web-1@bastion) is listed
// and ended like a jump link.
func TestSessionsKillDirect(t *testing.T) {
	w := newSessionsWorld(t)
	victim := startProcess(t, exec.Command("ssh", "-F", w.carol.ConfigPath, "-l", w.me+"+web-1", "bastion", "sleep 300"))
	id := w.waitLink(t, w.bob, "carol")
	if r := w.bob.ssh(t, nil, "bastion", "kill", id); r.Code != 0 {
		t.Fatalf("kill: got exit %d %q, want success", r.Code, r.Stderr)
	}
	select {
	case <-victim.done:
	case <-time.After(2 * time.Second):
		t.Fatal("carol's direct link still runs 2 s after the kill")
	}
	if out := victim.out.String(); !strings.Contains(out, "bastion: ended by session_control user bob") {
		t.Errorf("carol's stderr: got %q, want the kill reason", out)
	}
}
