package e2e

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"bastion/audit/recording"
)

// ageMarker is what the person types in the encrypted-recording test; its
// echo, ageMarker+"42", is what the session shows.
const ageMarker = "age-marker-"

// plaintexts are byte strings no file on the bastion's disk may hold while
// an encrypted recording runs: the asciicast header as the recorder writes
// it, and what the person typed and saw.
var plaintexts = []string{`{"version":2`, `"version": 2`, ageMarker + "42", ageMarker + "$((6*7))", "line-29999"}

// ageTools finds age, age-keygen and asciinema, failing the test without
// them (scripts/test installs them).
func ageTools(t *testing.T) (ageBin, keygen, asciinema string) {
	t.Helper()
	var paths [3]string
	for i, name := range []string{"age", "age-keygen", "asciinema"} {
		p, err := lookTool(name)
		if err != nil {
			t.Fatal(err)
		}
		paths[i] = p
	}
	return paths[0], paths[1], paths[2]
}

// ageIdentity has age-keygen write an identity file in dir and returns its
// path and recipient.
func ageIdentity(t *testing.T, keygen, dir, name string) (file, recipient string) {
	t.Helper()
	file = filepath.Join(dir, name)
	if out, err := exec.Command(keygen, "-o", file).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v\n%s", err, out)
	}
	out, err := exec.Command(keygen, "-y", file).Output()
	if err != nil {
		t.Fatalf("age-keygen -y: %v", err)
	}
	return file, strings.TrimSpace(string(out))
}

// assertNoPlaintextOnDisk fails when any regular file under roots, or any
// regular file the process pid (if not 0) holds open, contains one of
// plaintexts. It returns how many files it read.
func assertNoPlaintextOnDisk(t *testing.T, pid int, roots ...string) int {
	t.Helper()
	seen := map[string]bool{}
	check := func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			if !os.IsNotExist(err) { // a file renamed or removed meanwhile
				t.Errorf("reading %s: %v", path, err)
			}
			return
		}
		for _, p := range plaintexts {
			if bytes.Contains(data, []byte(p)) {
				t.Errorf("%s holds plaintext %q while the encrypted recording runs", path, p)
			}
		}
	}
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				check(path)
			}
			return nil
		})
	}
	if pid == 0 {
		return len(seen)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing the bastion's open files: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || !strings.HasPrefix(target, "/") {
			continue // sockets, pipes, anonymous inodes
		}
		if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
			check(target)
		}
	}
	return len(seen)
}

// asciinema cat runs `asciinema cat file` under a pty (it opens /dev/tty)
// and returns what it printed.
func asciinemaCat(t *testing.T, asciinema, file string) []byte {
	t.Helper()
	cmd := exec.Command(asciinema, "cat", file)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, tty) // ends with EIO when asciinema exits
		close(copied)
	}()
	select {
	case <-copied:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-copied
		t.Fatalf("asciinema cat did not finish in 60s")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, out.Bytes())
	}
	return out.Bytes()
}

// TestRecordingEncrypted runs a pty session through the real bastion with
// audit.recordings_recipients set. While it runs, no file in the
// recordings folder, the bastion's own folder, its TMPDIR, or among the
// files it holds open contains the asciicast header or what the person
// typed and saw, though whole encrypted chunks have reached the disk.
// After it ends, Debian's age decrypts the recording with the auditor's
// identity (and refuses another identity), asciinema cat shows what was
// typed and seen, `bastion audit decrypt` gives the same bytes, and
// `bastion audit verify --recordings` passes on the encrypted file and
// fails once one byte of it is flipped.
func TestRecordingEncrypted(t *testing.T) {
	ageBin, keygen, asciinema := ageTools(t)
	dir := t.TempDir()
	idFile, recipient := ageIdentity(t, keygen, dir, "auditor.key")
	otherFile, _ := ageIdentity(t, keygen, dir, "other.key")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	w := newAuditWorld(t, fmt.Sprintf("  record_input: true\n  signing_key: audit_ed25519\n  checkpoint_interval: 1s\n  recordings_recipients: [%q]", recipient), "", "TMPDIR="+tmp)
	pid := w.b.proc.cmd.Process.Pid

	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	sh.send(t, "echo "+ageMarker+"$((6*7))", ageMarker+"42")
	// About 170 KiB of output: two whole chunks reach the file.
	sh.send(t, "seq -f line-%g 1 30000", "line-30000")
	var part string
	waitFor(t, "the recording being written to hold two encrypted chunks", 60*time.Second, func() bool {
		matches, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.EncryptedExt+recording.PartExt))
		if len(matches) != 1 {
			return false
		}
		part = matches[0]
		fi, err := os.Stat(part)
		return err == nil && fi.Size() > 2*(64<<10)
	})
	if n := assertNoPlaintextOnDisk(t, pid, w.rec, w.b.Dir, tmp); n < 3 {
		t.Errorf("read %d files, want at least the recording, the audit log and the config", n)
	}
	if plain, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext+"*")); len(plain) != 1 || plain[0] != part {
		t.Errorf("got %q in the recordings folder, want only %s", plain, part)
	}
	if code := sh.exit(t, "exit 0"); code != 0 {
		t.Fatalf("pty shell: got exit %d, want 0; output %q", code, sh.out.String())
	}
	waitFor(t, "recording_sealed", 30*time.Second, func() bool { return countType(t, w.b, "recording_sealed") == 1 })
	w.b.signal(t, syscall.SIGTERM)
	if code := w.b.waitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("bastion exit %d after SIGTERM:\n%s", code, w.b.proc.out.String())
	}
	rec := strings.TrimSuffix(part, recording.PartExt)
	sealed := ""
	for _, e := range readEvents(t, w.b) {
		if e["type"] == "recording_sealed" {
			sealed, _ = e["recording"].(string)
		}
	}
	if filepath.Base(sealed) != filepath.Base(rec) {
		t.Errorf("got recording_sealed for %q, want %s", sealed, filepath.Base(rec))
	}
	assertNoPlaintextOnDisk(t, 0, w.rec, w.b.Dir, tmp)

	// Debian's age decrypts it with the auditor's identity.
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ageBin, "-d", "-i", idFile, rec)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("age -d: %v\n%s", err, stderr.String())
	}
	plain := stdout.Bytes()
	if !bytes.HasPrefix(plain, []byte(`{"version":2`)) {
		t.Fatalf("age -d: got %q…, want an asciicast v2 header", plain[:min(len(plain), 80)])
	}
	castFile := filepath.Join(dir, "session.cast")
	writeFile(t, castFile, string(plain), 0o600)

	// asciinema cat shows what the person typed (echoed) and saw.
	out := asciinemaCat(t, asciinema, castFile)
	for _, want := range []string{"echo " + ageMarker + "$((6*7))", ageMarker + "42", "line-15000", "line-30000"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("asciinema cat: no %q in %d bytes of output", want, len(out))
		}
	}

	// Another identity is refused, by age and by the bastion.
	if out, err := exec.Command(ageBin, "-d", "-i", otherFile, rec).CombinedOutput(); err == nil {
		t.Errorf("age -d with another identity: got success, want a refusal")
	} else if !strings.Contains(string(out), "no identity matched") {
		t.Errorf("age -d with another identity: got %q, want no identity matched", out)
	}
	if code, out := runBastion(t, "audit", "decrypt", "--identity", otherFile, rec); code != 1 || !strings.Contains(out, "is a recipient of this recording") {
		t.Errorf("bastion audit decrypt with another identity: got %d %q, want 1 and the refusal", code, out)
	}

	// bastion audit decrypt gives the same bytes, to stdout and to -o.
	got, err := exec.Command(bastionBin, "audit", "decrypt", "--identity", idFile, rec).Output()
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("bastion audit decrypt: got %d bytes, %v; want the %d bytes age gave", len(got), err, len(plain))
	}
	outFile := filepath.Join(dir, "out.cast")
	if code, out := runBastion(t, "audit", "decrypt", "--identity", idFile, rec, "-o", outFile); code != 0 {
		t.Errorf("bastion audit decrypt -o: got %d %q", code, out)
	} else if got, _ := os.ReadFile(outFile); !bytes.Equal(got, plain) {
		t.Errorf("bastion audit decrypt -o: got %d bytes, want the %d bytes age gave", len(got), len(plain))
	}

	// audit verify checks the encrypted file against its manifest, and
	// catches one flipped byte.
	code, report := runBastion(t, "audit", "verify", w.b.AuditPath, "--recordings", w.rec)
	if code != 0 || !strings.Contains(report, "1 recordings checked") {
		t.Fatalf("audit verify --recordings: got %d\n%s", code, report)
	}
	flippedDir := filepath.Join(dir, "flipped")
	os.Mkdir(flippedDir, 0o700)
	data, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	writeFile(t, filepath.Join(flippedDir, filepath.Base(rec)), string(data), 0o600)
	code, report = runBastion(t, "audit", "verify", w.b.AuditPath, "--recordings", flippedDir)
	if code != 1 || !strings.Contains(report, "SHA-256 differs") {
		t.Errorf("audit verify on a flipped byte: got %d, want 1 and the SHA-256 mismatch\n%s", code, report)
	}
	if out, err := exec.Command(ageBin, "-d", "-i", idFile, filepath.Join(flippedDir, filepath.Base(rec))).CombinedOutput(); err == nil {
		t.Errorf("age -d on a flipped byte: got success, want a failure")
	} else {
		lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		t.Logf("age -d on a flipped byte: %s", lines[len(lines)-1])
	}
	t.Logf("encrypted recording %s: %d bytes on disk, %d bytes of asciicast", filepath.Base(rec), len(data), len(plain))
}
