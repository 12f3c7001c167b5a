package instanceconnect

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/internal/testkit"
)

func consoleKey(t testing.TB) ssh.PublicKey { return testkit.NewSigner(t).PublicKey() }

func keyLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " root@ip-10-0-0-1"
}

func TestParseConsoleHostKeys(t *testing.T) {
	old, cur, other := consoleKey(t), consoleKey(t), consoleKey(t)
	block := func(lines ...string) string {
		return consoleKeysBegin + "\n" + strings.Join(lines, "\n") + "\n" + consoleKeysEnd + "\n"
	}
	tests := []struct {
		name string
		out  string
		want []ssh.PublicKey
	}{
		{"one block", "[ 1.0] boot\n" + block(keyLine(cur)) + "login: ", []ssh.PublicKey{cur}},
		{"carriage returns", strings.ReplaceAll(block(keyLine(cur), keyLine(other)), "\n", "\r\n"), []ssh.PublicKey{cur, other}},
		{"the last boot wins", block(keyLine(old)) + "reboot\n" + block(keyLine(cur)), []ssh.PublicKey{cur}},
		{"garbage lines skipped", block("not a key", "ssh-ed25519 AAAA!!!", keyLine(cur), "\x1b[2J"), []ssh.PublicKey{cur}},
		{"no block", "cloud-init finished\n", nil},
		{"empty", "", nil},
		{"begin without end (truncated)", consoleKeysBegin + "\n" + keyLine(cur) + "\n", nil},
		{"end without begin (head cut off)", keyLine(cur) + "\n" + consoleKeysEnd + "\n", nil},
		{"empty block", block(), nil},
		{"a later unfinished block is not taken", block(keyLine(cur)) + consoleKeysBegin + "\n" + keyLine(other) + "\n", []ssh.PublicKey{cur}},
		{"keys outside the block ignored", keyLine(other) + "\n" + block(keyLine(cur)) + keyLine(other), []ssh.PublicKey{cur}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseConsoleHostKeys([]byte(tc.out))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Marshal(), tc.want[i].Marshal()) {
					t.Errorf("key %d: got %s, want %s", i, ssh.FingerprintSHA256(got[i]), ssh.FingerprintSHA256(tc.want[i]))
				}
			}
		})
	}
}

// TestParseConsoleHostKeysBounded feeds a console that prints a block of
// 10,000 keys: at most maxConsoleKeys are kept.
func TestParseConsoleHostKeysBounded(t *testing.T) {
	line := keyLine(consoleKey(t))
	var b strings.Builder
	b.WriteString(consoleKeysBegin + "\n")
	for range 10000 {
		b.WriteString(line + "\n")
	}
	b.WriteString(consoleKeysEnd + "\n")
	if got := ParseConsoleHostKeys([]byte(b.String())); len(got) != maxConsoleKeys {
		t.Errorf("got %d keys, want the cap %d", len(got), maxConsoleKeys)
	}
}

// FuzzParseConsoleHostKeys checks that any console output parses without
// panicking, into at most maxConsoleKeys keys, none of them a certificate,
// and that every key returned appears in the output between the markers.
func FuzzParseConsoleHostKeys(f *testing.F) {
	f.Add([]byte(consoleKeysBegin + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x\n" + consoleKeysEnd))
	f.Add([]byte(consoleKeysEnd + consoleKeysBegin))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, out []byte) {
		keys := ParseConsoleHostKeys(out)
		if len(keys) > maxConsoleKeys {
			t.Fatalf("%d keys", len(keys))
		}
		for _, k := range keys {
			if _, ok := k.(*ssh.Certificate); ok {
				t.Fatal("a certificate taken as a host key")
			}
		}
		if len(keys) > 0 && (!bytes.Contains(out, []byte(consoleKeysBegin)) || !bytes.Contains(out, []byte(consoleKeysEnd))) {
			t.Fatal("keys without a block")
		}
	})
}
