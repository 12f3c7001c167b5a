package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bastion/audit/recording"
)

// TestHostileAgeRecordingDiskFull: the disk of an encrypted recording
// fills up while the session runs. The recording takes the failure path
// of a plain one (the session is ended with the person told, a
// recording_failed event with action ended), no plaintext is left on the
// disk, and the file kept decrypts with Debian's age up to its last whole
// chunk, which age then reports truncated.
func TestHostileAgeRecordingDiskFull(t *testing.T) {
	ageBin, keygen, _ := ageTools(t)
	keys := t.TempDir()
	idFile, recipient := ageIdentity(t, keygen, keys, "auditor.key")
	// Larger than the default free-space watermark, so that the session
	// starts.
	rec := mountTmpfs(t, "80m")
	w := newHostileAuditWorld(t, "", rec, fmt.Sprintf("  recordings_recipients: [%q]", recipient))
	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	// About 100 KiB before the disk fills: one whole chunk on disk.
	sh.send(t, "seq -f line-%g 1 15000; echo started-$((2+2))", "started-4")
	var part string
	waitFor(t, "a whole encrypted chunk in the recording", 60*time.Second, func() bool {
		matches, _ := filepath.Glob(filepath.Join(rec, "*"+recording.EncryptedExt+recording.PartExt))
		if len(matches) != 1 {
			return false
		}
		part = matches[0]
		fi, err := os.Stat(part)
		return err == nil && fi.Size() > 64<<10
	})
	fillDisk(t, rec, "")
	sh.send(t, "head -c 300000 /dev/zero | tr '\\0' y; echo; echo after-$((3+3))", "the session recording cannot be written")
	select {
	case <-sh.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the session went on after its encrypted recording failed; output %q", sh.out.String())
	}
	waitFor(t, "a recording_failed event", 20*time.Second, func() bool {
		return len(eventsOf(t, w.b, "recording_failed")) > 0
	})
	if e := eventsOf(t, w.b, "recording_failed")[0]; e["action"] != "ended" || !strings.Contains(fmt.Sprint(e["error"]), "no space left") {
		t.Errorf("recording_failed: got %v, want action ended and the ENOSPC", e)
	}
	cut := strings.TrimSuffix(part, recording.PartExt)
	waitFor(t, "the cut recording renamed to its name", 20*time.Second, func() bool {
		_, err := os.Stat(cut)
		return err == nil
	})
	os.Remove(filepath.Join(rec, "filler"))
	assertNoPlaintextOnDisk(t, 0, rec, w.b.Dir)

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ageBin, "-d", "-i", idFile, cut)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil {
		t.Errorf("age -d on the cut recording: got success, want it reported truncated")
	}
	t.Logf("age -d on the cut recording: %d bytes, then %s", stdout.Len(), bytes.TrimSpace(stderr.Bytes()))
	if !bytes.HasPrefix(stdout.Bytes(), []byte(`{"version":2`)) || stdout.Len()%(64<<10) != 0 || stdout.Len() == 0 {
		t.Errorf("age -d on the cut recording: got %d bytes, want whole 64 KiB chunks of asciicast", stdout.Len())
	}
	if !strings.Contains(stderr.String(), "unexpected EOF") && !strings.Contains(stderr.String(), "truncated") {
		t.Errorf("age -d on the cut recording: got %q, want it reported truncated", stderr.String())
	}
	if code, out := runBastion(t, "audit", "decrypt", "--identity", idFile, cut, "-o", filepath.Join(keys, "cut.cast")); code != 1 || !strings.Contains(out, "truncated") {
		t.Errorf("bastion audit decrypt on the cut recording: got %d %q, want 1 and truncated", code, out)
	}
}

// TestHostileAgeRecordingCrash kills the bastion with SIGKILL while an
// encrypted recording runs, to show what the documented crash loss is:
// the .part file left holds whole age chunks only, no plaintext, and
// decrypts with Debian's age up to its last whole chunk, which age then
// reports truncated; `bastion audit decrypt` writes the same prefix and
// says truncated.
func TestHostileAgeRecordingCrash(t *testing.T) {
	ageBin, keygen, _ := ageTools(t)
	keys := t.TempDir()
	idFile, recipient := ageIdentity(t, keygen, keys, "auditor.key")
	rec := filepath.Join(t.TempDir(), "recordings")
	w := newHostileAuditWorld(t, "", rec, fmt.Sprintf("  recordings_recipients: [%q]", recipient))
	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	sh.send(t, "seq -f line-%g 1 25000; echo before-crash-$((2+2))", "before-crash-4")
	var part string
	waitFor(t, "two whole encrypted chunks in the recording", 60*time.Second, func() bool {
		matches, _ := filepath.Glob(filepath.Join(rec, "*"+recording.EncryptedExt+recording.PartExt))
		if len(matches) != 1 {
			return false
		}
		part = matches[0]
		fi, err := os.Stat(part)
		return err == nil && fi.Size() > 2*(64<<10)
	})
	w.b.proc.Stop() // SIGKILL: no Close, the chunk in memory is lost
	assertNoPlaintextOnDisk(t, 0, rec, w.b.Dir)

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ageBin, "-d", "-i", idFile, part)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "unexpected EOF") {
		t.Errorf("age -d on the crashed recording: got %v %q, want it reported truncated", err, stderr.String())
	}
	if n := stdout.Len(); n == 0 || n%(64<<10) != 0 || !bytes.HasPrefix(stdout.Bytes(), []byte(`{"version":2`)) || !bytes.Contains(stdout.Bytes(), []byte(`line-1\r\n`)) {
		t.Errorf("age -d on the crashed recording: got %d bytes, want whole 64 KiB chunks of the asciicast", n)
	}
	// What was lost: the tail of the session, in the chunk in memory.
	t.Logf("age -d on the crashed recording: %d bytes of asciicast, then %s; the last line kept: %q", stdout.Len(), bytes.TrimSpace(stderr.Bytes()),
		lastLine(stdout.Bytes()))
	out := filepath.Join(keys, "crashed.cast")
	if code, msg := runBastion(t, "audit", "decrypt", "--identity", idFile, part, "-o", out); code != 1 || !strings.Contains(msg, "truncated") {
		t.Errorf("bastion audit decrypt on the crashed recording: got %d %q, want 1 and truncated", code, msg)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, stdout.Bytes()) {
		t.Errorf("bastion audit decrypt -o: got %d bytes, want the %d age gave", len(got), stdout.Len())
	}
}

// lastLine returns the last complete line of data.
func lastLine(data []byte) []byte {
	data = bytes.TrimRight(data, "\n")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		return data[i+1:]
	}
	return data
}
