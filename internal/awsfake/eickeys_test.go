package awsfake

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"
)

// buildEICKeys builds cmd/eic-keys into a temporary directory and returns
// the binary's path.
func buildEICKeys(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "eic-keys")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "./cmd/eic-keys")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/eic-keys: %v\n%s", err, out)
	}
	return bin
}

func TestEICKeysCommand(t *testing.T) {
	t.Parallel()
	bin := buildEICKeys(t)
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.5"})
	key, _ := newEd25519Key(t)
	_, err := eicClient(t, s, clientConfig{}).SendSSHPublicKey(t.Context(), &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId:     aws.String(eicInstance),
		InstanceOSUser: aws.String("ec2-user"),
		SSHPublicKey:   aws.String(string(ssh.MarshalAuthorizedKey(key))),
	})
	if err != nil {
		t.Fatalf("SendSSHPublicKey: %v", err)
	}

	closed, err := Start(Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := closed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	tests := []struct {
		name       string
		args       []string
		wantKeys   []ssh.PublicKey
		wantExit   int
		wantStderr string
	}{
		{"pushed key", []string{s.URL(), eicInstance, "ec2-user"}, []ssh.PublicKey{key}, 0, ""},
		{"trailing slash", []string{s.URL() + "/", eicInstance, "ec2-user"}, []ssh.PublicKey{key}, 0, ""},
		{"another user", []string{s.URL(), eicInstance, "ubuntu"}, nil, 0, ""},
		{"another instance", []string{s.URL(), "i-0fedcba9876543210", "ec2-user"}, nil, 0, ""},
		{"no arguments", nil, nil, 1, "usage: eic-keys"},
		{"not http", []string{"ftp://127.0.0.1:1", eicInstance, "ec2-user"}, nil, 1, "is not http or https"},
		{"empty user", []string{s.URL(), eicInstance, ""}, nil, 1, "400 Bad Request"},
		{"server down", []string{closed.URL(), eicInstance, "ec2-user"}, nil, 1, "fetching keys"},
	}
	for _, tc := range tests {
		// Sequential: the last step moves the shared clock.
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), watchdog+5*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			exit := 0
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				exit = ee.ExitCode()
			case err != nil:
				t.Fatalf("running eic-keys: %v", err)
			}
			if exit != tc.wantExit {
				t.Errorf("exit code: got %d, want %d (stderr %q)", exit, tc.wantExit, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
			if got := parseKeys(t, stdout.String()); !sameKeys(got, tc.wantKeys) {
				t.Errorf("stdout keys: got %v, want %v", fingerprints(got), fingerprints(tc.wantKeys))
			}
		})
	}

	// After the key's lifetime the command lists nothing.
	t.Run("expired", func(t *testing.T) {
		clock.Advance(DefaultPushedKeyTTL)
		out, err := exec.CommandContext(t.Context(), bin, s.URL(), eicInstance, "ec2-user").Output()
		if err != nil {
			t.Fatalf("running eic-keys: %v", err)
		}
		if len(out) != 0 {
			t.Errorf("stdout: got %q, want empty", out)
		}
	})
}
