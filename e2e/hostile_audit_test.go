package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"bastion/audit/recording"
)

// The hostile audit cases: the audit trail and the recordings fail closed.
// They put the audit log or the recordings on a small tmpfs and fill it,
// so they need root (CI runs as root); they fail, not skip, without it.

// hostileAuditWorld is a bastion in front of a real sshd (static target
// web-1) that bob may log in to as anyone.
type hostileAuditWorld struct {
	b     *bastionProc
	bob   *client
	me    string
	rec   string
	admin string
}

// newHostileAuditWorld starts the world with the bastion's files (config,
// keys, audit log) in dir ("" for a temporary folder) and recordings in
// rec; auditExtra is added to the audit block (lines indented two spaces).
// clientExtra is added to bob's ssh_config under "Host *".
func newHostileAuditWorld(t *testing.T, dir, rec, auditExtra string, clientExtra ...string) *hostileAuditWorld {
	t.Helper()
	keys := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, keys, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	bobKey := newKey(t, keys, "bob")
	if dir == "" {
		dir = t.TempDir()
	}
	b := startBastionIn(t, dir, fmt.Sprintf(`  recordings: %s
%s
admin_listen: 127.0.0.1:0
users:
  - {name: bob, keys: [%q], groups: [ops]}
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [ops], targets: ["web-1"], os_users: ["*"]}
`, rec, auditExtra, bobKey.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()))
	m := adminRE.FindStringSubmatch(b.proc.out.String())
	if m == nil {
		t.Fatalf("no admin address in the bastion's output:\n%s", b.proc.out.String())
	}
	return &hostileAuditWorld{b: b, bob: newClient(t, b, "bob", bobKey, clientExtra...), me: me, rec: rec, admin: m[1]}
}

// mountTmpfs mounts a tmpfs of size (mount's syntax, "1m") on a fresh
// temporary folder, unmounted at cleanup (before the folder is removed).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a %s tmpfs on %s (these tests need root): %v\n%s", size, dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillDisk fills the file system of dir. tail, if not "", is a file on it
// that is first padded to a whole page with one JSON line, so that not
// even an append inside its last page fits.
func fillDisk(t *testing.T, dir, tail string) {
	t.Helper()
	if tail != "" {
		fi, err := os.Stat(tail)
		if err != nil {
			t.Fatal(err)
		}
		const page = 4096
		const skeleton = `{"type":"test_padding","reason":""}` + "\n"
		gap := page - int(fi.Size()%page)
		if gap < len(skeleton) {
			gap += page
		}
		f, err := os.OpenFile(tail, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(`{"type":"test_padding","reason":"` + strings.Repeat("x", gap-len(skeleton)) + `"}` + "\n")
		f.Close()
		if err != nil {
			t.Fatalf("padding %s: %v", tail, err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
}

// bastionSaid waits for the bastion's own output to contain want.
func (w *hostileAuditWorld) bastionSaid(t *testing.T, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%q in the bastion's output", want), 30*time.Second, func() bool {
		return strings.Contains(w.b.proc.out.String(), want)
	})
}

// eventsOf returns the audit events of type typ.
func eventsOf(t *testing.T, b *bastionProc, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range readEvents(t, b) {
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestHostileAuditLogFull: with the audit log on a full disk, a new login
// is refused with one line, and a live session is ended with it; with
// on_failure: continue the login works and the bastion logs the failure.
func TestHostileAuditLogFull(t *testing.T) {
	t.Run("refuse", func(t *testing.T) {
		// Larger than the default free-space watermark, so that the
		// first session starts.
		dir := mountTmpfs(t, "80m")
		w := newHostileAuditWorld(t, dir, filepath.Join(t.TempDir(), "recordings"), "")
		live := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
		live.send(t, "echo live-$((40+2))", "live-42")

		fillDisk(t, dir, w.b.AuditPath)
		r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo ran-$((1+1))")
		const line = "the audit log cannot be written"
		if r.Code == 0 || strings.Contains(r.Stdout, "ran-2") || !strings.Contains(r.Stderr, line) {
			t.Errorf("login with the audit log full: got exit %d, stdout %q, stderr %q; want it refused with %q", r.Code, r.Stdout, r.Stderr, line)
		}
		waitFor(t, "the live session to be told "+line+"; output "+live.out.String(), 30*time.Second, func() bool {
			return strings.Contains(live.out.String(), line)
		})
		select {
		case <-live.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the live session went on after the audit log failed; output %q", live.out.String())
		}
		w.bastionSaid(t, "audit_write_failed")
	})
	t.Run("continue", func(t *testing.T) {
		dir := mountTmpfs(t, "1m")
		w := newHostileAuditWorld(t, dir, filepath.Join(t.TempDir(), "recordings"), "  on_failure: continue\n  min_free_space: 0")
		w.bastionSaid(t, "audit_fail_open")
		fillDisk(t, dir, w.b.AuditPath)
		r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo ran-$((1+1))")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ran-2") {
			t.Errorf("login with on_failure: continue: got exit %d, stdout %q, stderr %q; want it to run", r.Code, r.Stdout, r.Stderr)
		}
		w.bastionSaid(t, "audit_write_failed")
		if n := scrape(t, w.admin)[`bastion_audit_write_failures_total{what="audit_log"}`]; n < 1 {
			t.Errorf("bastion_audit_write_failures_total{what=\"audit_log\"}: got %v, want at least 1", n)
		}
	})
}

// TestHostileAuditRecordingDiskFull: a pty session whose recording cannot
// be written any more is ended with one line; one whose recording cannot
// be created does not start.
func TestHostileAuditRecordingDiskFull(t *testing.T) {
	t.Run("write", func(t *testing.T) {
		// Larger than the default free-space watermark, so that the
		// session starts.
		rec := mountTmpfs(t, "80m")
		w := newHostileAuditWorld(t, "", rec, "")
		sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
		sh.send(t, "echo started-$((2+2))", "started-4")
		fillDisk(t, rec, "")
		sh.send(t, "head -c 300000 /dev/zero | tr '\\0' y; echo; echo after-$((3+3))", "the session recording cannot be written")
		select {
		case <-sh.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the session went on after its recording failed; output %q", sh.out.String())
		}
		waitFor(t, "a recording_failed event", 20*time.Second, func() bool {
			return len(eventsOf(t, w.b, "recording_failed")) > 0
		})
		if e := eventsOf(t, w.b, "recording_failed")[0]; e["action"] != "ended" {
			t.Errorf("recording_failed: got action %v, want ended (%v)", e["action"], e)
		}
	})
	t.Run("create", func(t *testing.T) {
		rec := mountTmpfs(t, "1m")
		w := newHostileAuditWorld(t, "", rec, "  min_free_space: 0")
		fillDisk(t, rec, "")
		r := w.bob.ssh(t, nil, "-tt", "-J", "bastion", w.me+"@web-1", "echo ran-$((1+1))")
		if r.Code == 0 || strings.Contains(r.Stdout, "ran-2") || !strings.Contains(r.Stdout+r.Stderr, "the session recording cannot be written") {
			t.Errorf("pty session with no room for its recording: got exit %d, stdout %q, stderr %q; want it refused", r.Code, r.Stdout, r.Stderr)
		}
		waitFor(t, "a recording_failed event", 20*time.Second, func() bool {
			return len(eventsOf(t, w.b, "recording_failed")) > 0
		})
		if e := eventsOf(t, w.b, "recording_failed")[0]; e["action"] != "refused" {
			t.Errorf("recording_failed: got action %v, want refused (%v)", e["action"], e)
		}
	})
}

// TestHostileAuditRecordingLimit: a recording that reaches
// max_recording_size ends with a recording_truncated event, and the
// session is ended; with on_failure: continue it goes on unrecorded.
func TestHostileAuditRecordingLimit(t *testing.T) {
	for _, tc := range []struct {
		name, extra, action string
	}{
		{"refuse", "  max_recording_size: 64KiB", "ended"},
		{"continue", "  max_recording_size: 64KiB\n  on_failure: continue", "continued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newHostileAuditWorld(t, "", filepath.Join(t.TempDir(), "recordings"), tc.extra)
			sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
			sh.send(t, "echo started-$((2+2))", "started-4")
			flood := "head -c 300000 /dev/zero | tr '\\0' y; echo; echo after-$((3+3))"
			if tc.action == "ended" {
				sh.send(t, flood, "size limit")
				select {
				case <-sh.done:
				case <-time.After(30 * time.Second):
					t.Fatalf("the session went on past max_recording_size; output %q", sh.out.String())
				}
			} else {
				sh.send(t, flood, "after-6")
				if code := sh.exit(t, "exit 0"); code != 0 {
					t.Errorf("session with on_failure: continue: got exit %d, want 0", code)
				}
			}
			waitFor(t, "a recording_truncated event", 20*time.Second, func() bool {
				return len(eventsOf(t, w.b, "recording_truncated")) > 0
			})
			e := eventsOf(t, w.b, "recording_truncated")[0]
			if e["action"] != tc.action || e["recording"] == nil {
				t.Errorf("recording_truncated: got %v, want action %s and the recording", e, tc.action)
			}
			waitFor(t, "the recording to be finished", 20*time.Second, func() bool {
				m, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext))
				return len(m) == 1
			})
			m, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext))
			if fi, err := os.Stat(m[0]); err != nil || fi.Size() > 66<<10 {
				t.Errorf("recording %s: got %v bytes (%v), want at most about 64 KiB", m[0], fi.Size(), err)
			}
		})
	}
}

// TestHostileAuditControlMasterRecordings: two pty sessions through one
// ControlMaster connection to the bastion, started at once, get two
// recordings and two channel numbers.
func TestHostileAuditControlMasterRecordings(t *testing.T) {
	sockDir := t.TempDir()
	w := newHostileAuditWorld(t, "", filepath.Join(t.TempDir(), "recordings"), "",
		"  ControlPath "+filepath.Join(sockDir, "cm-%r@%h:%p"))
	startProcess(t, exec.Command("ssh", "-F", w.bob.ConfigPath, "-M", "-N", "bastion"))
	waitFor(t, "the ControlMaster socket", 30*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(sockDir, "cm-*"))
		return len(m) == 1
	})
	a := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	b := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	a.send(t, "echo a-$((1+1))", "a-2")
	b.send(t, "echo b-$((2+2))", "b-4")
	a.exit(t, "exit 0")
	b.exit(t, "exit 0")
	waitFor(t, "two session_end events", 30*time.Second, func() bool {
		return len(eventsOf(t, w.b, "session_end")) == 2
	})
	starts := eventsOf(t, w.b, "session_start")
	if len(starts) != 2 {
		t.Fatalf("session_start events: got %d, want 2", len(starts))
	}
	if starts[0]["session_id"] != starts[1]["session_id"] {
		t.Fatalf("the two sessions did not share the ControlMaster connection: %v", starts)
	}
	if starts[0]["channel"] == starts[1]["channel"] {
		t.Errorf("channel numbers: got %v and %v, want them distinct on one connection", starts[0]["channel"], starts[1]["channel"])
	}
	if starts[0]["recording"] == nil || starts[1]["recording"] == nil || starts[0]["recording"] == starts[1]["recording"] {
		t.Errorf("recordings: got %v and %v, want two distinct files", starts[0]["recording"], starts[1]["recording"])
	}
	waitFor(t, "two recording files", 20*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext))
		return len(m) == 2
	})
}

// TestHostileAuditFreeSpaceWatermark: with less free space than
// min_free_space (default 64MiB) where recordings go, a new link is
// refused with one line and an event.
func TestHostileAuditFreeSpaceWatermark(t *testing.T) {
	rec := mountTmpfs(t, "16m")
	w := newHostileAuditWorld(t, "", rec, "")
	r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo ran-$((1+1))")
	const line = "disk is nearly full"
	if r.Code == 0 || strings.Contains(r.Stdout, "ran-2") || !strings.Contains(r.Stderr, line) {
		t.Errorf("login below the free-space watermark: got exit %d, stdout %q, stderr %q; want it refused with %q", r.Code, r.Stdout, r.Stderr, line)
	}
	found := false
	for _, e := range eventsOf(t, w.b, "limit_exceeded") {
		found = found || e["limit"] == "min_free_space"
	}
	if !found {
		t.Errorf("no limit_exceeded event with limit min_free_space")
	}
}

// TestHostileAuditLogrotate: after the audit log is renamed, SIGUSR1 (and
// SIGHUP) make the bastion write a new file at the original path.
func TestHostileAuditLogrotate(t *testing.T) {
	w := newHostileAuditWorld(t, "", filepath.Join(t.TempDir(), "recordings"), "")
	// login runs a command through the bastion and waits for the end of
	// its link in the audit file at the original path.
	login := func(want string) {
		t.Helper()
		r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo "+want)
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Fatalf("login: got exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		waitFor(t, "the login's link_end in "+w.b.AuditPath, 30*time.Second, func() bool {
			return countType(t, w.b, "link_end") == 1
		})
	}
	login("first")
	for i, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP} {
		rotated := fmt.Sprintf("%s.%d", w.b.AuditPath, i+1)
		if err := os.Rename(w.b.AuditPath, rotated); err != nil {
			t.Fatal(err)
		}
		w.b.signal(t, sig)
		waitFor(t, fmt.Sprintf("a new audit file after %v", sig), 30*time.Second, func() bool {
			_, err := os.Stat(w.b.AuditPath)
			return err == nil
		})
		login(fmt.Sprintf("after-%d", i))
		data, err := os.ReadFile(rotated)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), `"type":"link_end"`); n != 1 {
			t.Errorf("rotated file %s: got %d link_end events, want 1 (only the login before the rotation)", rotated, n)
		}
		select {
		case <-w.b.proc.done:
			t.Fatalf("the bastion exited on %v:\n%s", sig, w.b.proc.out.String())
		default:
		}
	}
}
