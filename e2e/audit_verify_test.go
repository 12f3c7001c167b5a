package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBastion runs the bastion binary with args and returns its exit code
// and output.
func runBastion(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bastionBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("bastion %v: timed out:\n%s", args, out.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatalf("bastion %v: %v", args, err)
	}
	return 0, out.String()
}

// chainedWorld is a bastion with a signing key and checkpoints every
// second, in front of a real sshd, whose audit log bob's sessions fill.
type chainedWorld struct {
	*hostileAuditWorld
	dir string
}

func newChainedWorld(t *testing.T, dir string) *chainedWorld {
	t.Helper()
	rec := filepath.Join(dir, "recordings")
	w := newHostileAuditWorld(t, dir, rec, "  signing_key: audit_ed25519\n  checkpoint_interval: 1s\n  record_exec: true")
	return &chainedWorld{hostileAuditWorld: w, dir: dir}
}

// sessions runs a pty session and an exec session through the bastion and
// waits until both ended and a checkpoint covers them.
func (w *chainedWorld) sessions(t *testing.T, tag string) {
	t.Helper()
	before := countType(t, w.b, "session_end")
	for _, args := range [][]string{{"-tt"}, nil} {
		r := w.bob.ssh(t, nil, append(args, "-J", "bastion", w.me+"@web-1", "echo "+tag)...)
		if r.Code != 0 || !strings.Contains(r.Stdout, tag) {
			t.Fatalf("session %v: got exit %d, stdout %q, stderr %q", args, r.Code, r.Stdout, r.Stderr)
		}
	}
	waitFor(t, "two session_end events and an interval checkpoint after them", 60*time.Second, func() bool {
		lines := w.b.AuditLines(t)
		ends := 0
		for i, line := range lines {
			if strings.Contains(line, `"type":"session_end"`) {
				ends++
			}
			if ends == before+2 && strings.Contains(line, `"reason":"interval"`) && i > 0 {
				return true
			}
		}
		return false
	})
}

// stop ends the bastion with SIGTERM, so that it writes its stop
// checkpoint, and waits for it.
func (w *chainedWorld) stop(t *testing.T) {
	t.Helper()
	w.b.signal(t, syscall.SIGTERM)
	if code := w.b.waitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("bastion exit %d after SIGTERM:\n%s", code, w.b.proc.out.String())
	}
}

// lineIndex returns the index of the first line at or after from holding
// every one of want.
func lineIndex(t *testing.T, lines []string, from int, want ...string) int {
	t.Helper()
	for i := from; i < len(lines); i++ {
		ok := true
		for _, s := range want {
			ok = ok && strings.Contains(lines[i], s)
		}
		if ok {
			return i
		}
	}
	t.Fatalf("no line after %d holds %q:\n%s", from, want, strings.Join(lines, "\n"))
	return -1
}

// TestAuditVerifyTamper writes a real audit log with the bastion (pty and
// exec sessions through real OpenSSH, checkpoints signed every second, a
// clean stop), then has `bastion audit verify` check the untouched log
// and copies tampered as an intruder would: a line deleted, a field
// edited, two lines swapped, the tail cut past a checkpoint (also in
// place, with the bastion restarted after the cut), and a check against
// another key. Each tampering is caught, naming its line, with exit 1.
func TestAuditVerifyTamper(t *testing.T) {
	dir := t.TempDir()
	w := newChainedWorld(t, dir)
	w.sessions(t, "chained-one")
	w.stop(t)
	log := w.b.AuditPath

	code, pub := runBastion(t, "audit", "pubkey", "--config", w.b.Config)
	if code != 0 || !strings.HasPrefix(pub, "ssh-ed25519 ") {
		t.Fatalf("audit pubkey: exit %d, %q", code, pub)
	}
	pubFile := filepath.Join(t.TempDir(), "audit.pub")
	writeFile(t, pubFile, pub, 0o644)
	lines := w.b.AuditLines(t)
	var first map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	if first["type"] != "audit_checkpoint" || first["signing_key"] != strings.TrimSpace(pub) {
		t.Fatalf("first line: got %s, want the start checkpoint signed by %s", lines[0], pub)
	}
	fi, err := os.Stat(filepath.Join(dir, "audit_ed25519"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key: got %v, %v; want mode 0600", fi, err)
	}

	// The untouched log: exit 0, with a summary.
	code, out := runBastion(t, "audit", "verify", log, "--pubkey", pubFile, "--recordings", w.rec)
	if code != 0 || !strings.Contains(out, "chain intact") || !strings.Contains(out, "checkpoints verified with the given key") {
		t.Fatalf("untouched log: exit %d:\n%s", code, out)
	}
	t.Logf("untouched log:\n%s", out)
	if !strings.Contains(out, "2 recordings checked against their manifests") {
		t.Errorf("untouched log: want the pty and the exec recordings checked:\n%s", out)
	}
	seal := lineIndex(t, lines, 0, `"type":"recording_sealed"`)
	var sealed map[string]any
	json.Unmarshal([]byte(lines[seal]), &sealed)
	if name, _ := sealed["recording"].(string); name == "" || sealed["sha256"] == nil || sealed["size"] == nil || sealed["duration_ms"] == nil {
		t.Errorf("recording_sealed: got %s, want recording, size, sha256, duration_ms", lines[seal])
	}

	// A recording changed after it was sealed, and one removed.
	t.Run("recordings", func(t *testing.T) {
		name := sealed["recording"].(string)
		for _, change := range []string{"edit", "remove"} {
			d := t.TempDir()
			if out, err := exec.Command("cp", "-a", w.rec+"/.", d).CombinedOutput(); err != nil {
				t.Fatalf("copying recordings: %v %s", err, out)
			}
			p := filepath.Join(d, name)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			want := "SHA-256 differs"
			if change == "edit" {
				data[len(data)/2] ^= 1
				writeFile(t, p, string(data), 0o600)
			} else {
				os.Remove(p)
				want = "is not in"
			}
			code, out := runBastion(t, "audit", "verify", log, "--pubkey", pubFile, "--recordings", d)
			at := fmt.Sprintf("FAIL %s:%d: recording %s", log, seal+1, name)
			if code != 1 || !strings.Contains(out, at) || !strings.Contains(out, want) {
				t.Errorf("%s: exit %d, want 1 and %q ... %q:\n%s", change, code, at, want, out)
			}
		}
	})

	// A recording no manifest names (planted, or cut by a crash) is
	// noted, not failed, and the sealed ones still verify.
	t.Run("unsealed recording noted", func(t *testing.T) {
		d := t.TempDir()
		if out, err := exec.Command("cp", "-a", w.rec+"/.", d).CombinedOutput(); err != nil {
			t.Fatalf("copying recordings: %v %s", err, out)
		}
		planted := filepath.Join(d, "planted.cast")
		writeFile(t, planted, "{\"version\": 2}\n", 0o600)
		code, out := runBastion(t, "audit", "verify", log, "--pubkey", pubFile, "--recordings", d)
		if code != 0 || !strings.Contains(out, "note "+planted+": no recording_sealed event") ||
			!strings.Contains(out, "1 recording files have no manifest") || !strings.Contains(out, "2 recordings checked") {
			t.Errorf("planted recording: exit %d, want 0, a note naming it and 2 sealed ones checked:\n%s", code, out)
		}
	})

	// Tampered copies, each in a folder of its own (beside its head
	// file where the case keeps it).
	start := lineIndex(t, lines, 0, `"type":"session_start"`)
	cp := lineIndex(t, lines, start, `"reason":"interval"`)
	cases := []struct {
		name  string
		lines []string
		head  bool
		line  int    // 1-based line the report must name
		what  string // and what it must say
		key   string // --pubkey; "" for the bastion's
	}{
		{name: "delete a line", lines: append(append([]string(nil), lines[:start]...), lines[start+1:]...), line: start + 1, what: "removed before this line"},
		{name: "edit a field", lines: func() []string {
			l := append([]string(nil), lines...)
			l[start] = strings.Replace(l[start], `"user":"bob"`, `"user":"alice"`, 1)
			if l[start] == lines[start] {
				t.Fatalf("line %d has no user bob: %s", start+1, lines[start])
			}
			return l
		}(), line: start + 1, what: "changed"},
		{name: "swap two lines", lines: func() []string {
			l := append([]string(nil), lines...)
			l[start], l[start+1] = l[start+1], l[start]
			return l
		}(), line: start + 1, what: "out of order"},
		{name: "truncate the tail past a checkpoint", lines: lines[:cp], head: true, line: cp, what: "were removed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			p := filepath.Join(d, "audit.jsonl")
			writeFile(t, p, strings.Join(tc.lines, "\n")+"\n", 0o600)
			if tc.head {
				head, err := os.ReadFile(log + ".head")
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, p+".head", string(head), 0o600)
			}
			code, out := runBastion(t, "audit", "verify", p, "--pubkey", pubFile)
			want := fmt.Sprintf("FAIL %s:%d: ", p, tc.line)
			if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, tc.what) {
				t.Errorf("exit %d, want 1 and %q ... %q:\n%s", code, want, tc.what, out)
			}
		})
	}

	// A checkpoint signed by another key.
	t.Run("another key", func(t *testing.T) {
		other := newKey(t, t.TempDir(), "other")
		code, out := runBastion(t, "audit", "verify", log, "--pubkey", other.Public)
		if code != 1 || !strings.Contains(out, fmt.Sprintf("FAIL %s:1: checkpoint signed by another key", log)) {
			t.Errorf("exit %d, want 1 and line 1 signed by another key:\n%s", code, out)
		}
	})

	// The cut made in place while the bastion is stopped: the restarted
	// bastion goes on from its last checkpoint, so its first line names
	// the gap, in the log itself.
	t.Run("truncate in place and restart", func(t *testing.T) {
		writeFile(t, log, strings.Join(lines[:cp], "\n")+"\n", 0o600)
		w2 := newChainedWorld(t, dir)
		w2.sessions(t, "chained-two")
		w2.stop(t)
		code, out := runBastion(t, "audit", "verify", log, "--pubkey", pubFile)
		want := fmt.Sprintf("FAIL %s:%d: seq %d follows seq %d", log, cp+1, len(lines)+1, cp)
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 1 and %q:\n%s", code, want, out)
		}
	})
}

// TestAuditPolicyRecordExec checks `record: [pty, exec]` in a policy: exec
// sessions on the targets it matches are recorded (the output is in the
// asciicast file, sealed in the log) without the global record_exec, and
// exec sessions elsewhere are not.
func TestAuditPolicyRecordExec(t *testing.T) {
	keys := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, keys, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	bobKey := newKey(t, keys, "bob")
	rec := filepath.Join(t.TempDir(), "recordings")
	static := func(name string) string {
		return fmt.Sprintf("    - {name: %s, address: %q, user: %s, private_key: %q, host_key: %q}\n", name, up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey())
	}
	b := startBastion(t, fmt.Sprintf(`  recordings: %s
users:
  - {name: bob, keys: [%q], groups: [ops]}
providers:
  static:
%s%spolicies:
  - {groups: [ops], targets: ["web-1"], os_users: ["*"], record: [pty, exec]}
  - {groups: [ops], targets: ["web-2"], os_users: ["*"]}
`, rec, bobKey.AuthorizedKey(), static("web-1"), static("web-2")))
	bob := newClient(t, b, "bob", bobKey)
	for _, target := range []string{"web-1", "web-2"} {
		r := bob.ssh(t, nil, "-J", "bastion", me+"@"+target, "echo recorded-on-"+target)
		if r.Code != 0 || !strings.Contains(r.Stdout, "recorded-on-"+target) {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", target, r.Code, r.Stdout, r.Stderr)
		}
	}
	waitFor(t, "two session_end events", 30*time.Second, func() bool { return countType(t, b, "session_end") == 2 })
	for _, e := range eventsOf(t, b, "session_start") {
		path, _ := e["recording"].(string)
		switch e["typed"] {
		case "web-1":
			data, err := os.ReadFile(path)
			if err != nil || !strings.Contains(string(data), "recorded-on-web-1") {
				t.Errorf("web-1 exec recording %q: got %q, %v; want the command's output", path, data, err)
			}
		case "web-2":
			if path != "" {
				t.Errorf("web-2 exec: got recording %q, want none (its policy records nothing)", path)
			}
		}
	}
	if n := len(eventsOf(t, b, "recording_sealed")); n != 1 {
		t.Errorf("recording_sealed: got %d, want 1", n)
	}
}

// TestAuditFileContents moves a file through the bastion with real OpenSSH
// sftp (put, get, a resumed put) and scp -O, and checks that each whole
// transfer's event carries the file's size and SHA-256, and the resumed
// one says it was not whole.
func TestAuditFileContents(t *testing.T) {
	w := newHostileAuditWorld(t, "", filepath.Join(t.TempDir(), "recordings"), "")
	local, remote := t.TempDir(), t.TempDir()
	content := bytes.Repeat([]byte("bastion file contents, hashed as they pass\n"), 20000) // 860 KB
	content = append(content, "tail"...)
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	src := filepath.Join(local, "up.bin")
	writeFile(t, src, string(content), 0o644)
	half := filepath.Join(local, "half.bin")
	writeFile(t, half, string(content), 0o644)
	// A partial remote copy for reput to resume.
	writeFile(t, filepath.Join(remote, "half.bin"), string(content[:100000]), 0o644)
	batch := fmt.Sprintf("put %s %s\nget %s %s\nreput %s %s\n", src, filepath.Join(remote, "up.bin"),
		filepath.Join(remote, "up.bin"), filepath.Join(local, "down.bin"), half, filepath.Join(remote, "half.bin"))
	if r := w.bob.run(t, []byte(batch), "sftp", "-b", "-", "-J", "bastion", w.me+"@web-1"); r.Code != 0 {
		t.Fatalf("sftp: exit %d: %s", r.Code, r.Stderr)
	}
	if r := w.bob.run(t, nil, "scp", "-O", "-J", "bastion", src, w.me+"@web-1:"+filepath.Join(remote, "scp.bin")); r.Code != 0 {
		t.Fatalf("scp -O: exit %d: %s", r.Code, r.Stderr)
	}
	waitFor(t, "the scp event", 30*time.Second, func() bool { return len(eventsOf(t, w.b, "scp")) > 0 })
	seen := map[string]bool{}
	for _, e := range eventsOf(t, w.b, "sftp") {
		if e["op"] != "close" {
			continue
		}
		path, _ := e["path"].(string)
		switch filepath.Base(path) {
		case "up.bin":
			seen[path+" "+fmt.Sprint(e["open_mode"])] = true
			if e["sha256"] != want || e["size"] != float64(len(content)) || e["partial"] != nil {
				t.Errorf("sftp close of %s: got %v, want sha256 %s, size %d", path, e, want, len(content))
			}
		case "half.bin":
			seen["reput"] = true
			if e["sha256"] != nil || e["partial"] == nil {
				t.Errorf("sftp close after reput: got %v, want partial and no sha256", e)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("got closes %v, want the put, the get and the reput", seen)
	}
	for _, e := range eventsOf(t, w.b, "scp") {
		if e["sha256"] != want || e["partial"] != nil {
			t.Errorf("scp event: got %v, want sha256 %s", e, want)
		}
	}
}
