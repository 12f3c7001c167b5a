package tofu

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// helperEnv selects the helper mode of the test binary: instead of running
// tests it opens the store named by helperPath, says "ready", waits for a
// line on stdin, checks the key of helperSeed for helperID and prints
// "trusted" or "refused: …". The parent starts two at once, so that both
// have loaded the (empty) file before either learns: two bastions that
// started before either met the instance.
const (
	helperEnv  = "BASTION_TOFU_HELPER"
	helperPath = "BASTION_TOFU_PATH"
	helperSeed = "BASTION_TOFU_SEED"
	helperID   = "BASTION_TOFU_ID"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

func runHelper() int {
	seed, err := hex.DecodeString(os.Getenv(helperSeed))
	if err != nil || len(seed) != ed25519.SeedSize {
		fmt.Println("bad seed")
		return 2
	}
	key, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	if err != nil {
		fmt.Println(err)
		return 2
	}
	s, err := Open(os.Getenv(helperPath), TrustOnFirstUse)
	if err != nil {
		fmt.Println("open:", err)
		return 2
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("stdin:", err)
		return 2
	}
	if err := s.Callback(os.Getenv(helperID))("", nil, key); err != nil {
		fmt.Println("refused:", err)
		return 0
	}
	fmt.Println("trusted")
	return 0
}

// helperProc is a running helper.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func startHelper(t *testing.T, ctx context.Context, path, id string, seed []byte) *helperProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperPath+"="+path, helperID+"="+id, helperSeed+"="+hex.EncodeToString(seed))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &helperProc{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
}

func (h *helperProc) line(t *testing.T) string {
	t.Helper()
	if !h.lines.Scan() {
		t.Fatalf("helper output ended: %v", h.lines.Err())
	}
	return h.lines.Text()
}

// TestHostileTOFUTwoProcesses: two bastion processes share one known_hosts
// file and meet one instance id for the first time at once, each seeing a
// different key. Exactly one key is ever trusted: one process learns, the
// other re-reads the file under the lock and refuses (host key mismatch),
// and a store opened afterwards (a restart) trusts that key alone.
func TestHostileTOFUTwoProcesses(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "ec2_known_hosts")
		var seeds [2][]byte
		var keys [2]ssh.PublicKey
		for i := range seeds {
			seeds[i] = make([]byte, ed25519.SeedSize)
			seeds[i][0], seeds[i][1] = byte(round), byte(i+1)
			k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seeds[i]).Public())
			if err != nil {
				t.Fatal(err)
			}
			keys[i] = k
		}
		var procs [2]*helperProc
		for i := range procs {
			procs[i] = startHelper(t, ctx, path, idA, seeds[i])
		}
		for i, p := range procs {
			if got := p.line(t); got != "ready" {
				t.Fatalf("round %d: helper %d: got %q, want ready", round, i, got)
			}
		}
		for _, p := range procs {
			io.WriteString(p.stdin, "go\n")
		}
		trusted := -1
		for i, p := range procs {
			got := p.line(t)
			switch {
			case got == "trusted" && trusted >= 0:
				t.Fatalf("round %d: both processes trusted their key for %s (the second: helper %d)", round, idA, i)
			case got == "trusted":
				trusted = i
			case strings.HasPrefix(got, "refused:") && strings.Contains(got, "differs"):
			default:
				t.Fatalf("round %d: helper %d: got %q, want trusted or a host key mismatch", round, i, got)
			}
		}
		if trusted < 0 {
			t.Fatalf("round %d: neither process trusted a key", round)
		}
		// After a restart, only the winner's key is trusted.
		s, err := Open(path, TrustOnFirstUse)
		if err != nil {
			t.Fatalf("round %d: reopening: %v", round, err)
		}
		s.OnLearn = func(id string, _ ssh.PublicKey) { t.Errorf("round %d: reopened store learned %s", round, id) }
		for i, k := range keys {
			err := check(s, idA, k)
			if i == trusted && err != nil {
				t.Fatalf("round %d: after restart the winner's key is refused: %v", round, err)
			}
			if i != trusted && err == nil {
				t.Fatalf("round %d: after restart the loser's key is trusted too", round)
			}
		}
	}
}

// TestHostileTOFUConflictingFile: a file that already holds two different
// keys of one type for an instance (written by two bastions that raced
// before the store locked, or by hand) trusts neither: both are refused
// as a mismatch, in either mode.
func TestHostileTOFUConflictingFile(t *testing.T) {
	a, b := newKey(t), newKey(t)
	for _, mode := range []Mode{TrustOnFirstUse, Pinned} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(path, []byte(line(idA, a)+line(idA, b)+line(idB, a)), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range []ssh.PublicKey{a, b} {
				var mm *upstream.HostKeyMismatchError
				if err := check(s, idA, k); !errors.As(err, &mm) {
					t.Errorf("key %d of two for %s: got %v, want a host key mismatch", i+1, idA, err)
				}
			}
			if err := check(s, idB, a); err != nil {
				t.Errorf("%s, with one key: %v", idB, err)
			}
		})
	}
}
