package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
)

// Hostile names and idle own sessions (issue 10 items 9a and 9b), with the
// real OpenSSH client against `bastion serve` and the AWS fake.

// Hostile EC2 Name tags: a newline that would add a fake row to `ssh
// bastion list`, and ANSI escapes that would clear and recolour the
// person's terminal. The escapes are the 8-bit CSI (U+009B): EC2's API is
// XML, which cannot carry a 7-bit ESC (encoding/xml, in the fake as in any
// XML writer, replaces it with U+FFFD), but does carry C1 controls.
const (
	tagNewline = "evil\nfake-row  ec2  us-east-1  root"
	tagANSI    = "\u009b2J\u009b31mred\u009b0m"
)

// namesWorld is an AWS fake with three EC2 instances, one plainly named
// and two with hostile Name tags, and the bastion config body that lists
// them for dana.
type namesWorld struct {
	fake   *awsfake.Server
	person keypair
	body   string
}

func newNamesWorld(t *testing.T) *namesWorld {
	t.Helper()
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	for i, name := range []string{"plain-1", tagNewline, tagANSI} {
		fake.AddEC2Instance(awsfake.EC2Instance{ID: fmt.Sprintf("i-0000000000000001%d", i), Region: region,
			PrivateIP: "127.0.0.1", Tags: map[string]string{"Name": name}})
	}
	w := &namesWorld{fake: fake, person: newKey(t, t.TempDir(), "dana")}
	w.body = fmt.Sprintf(`users:
  - {name: dana, keys: [%q], groups: [dev]}
providers:
  ec2: {regions: [%s], host_keys: tofu, known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: [ec2-user]}
`, w.person.AuthorizedKey(), region)
	return w
}

// start runs a bastion over the world with the given limits line.
func (w *namesWorld) start(t *testing.T, limits string) (*bastionProc, *client) {
	t.Helper()
	b := startBastion(t, w.body+limits+"\n", awsEnv(w.fake, w.fake.SecretAccessKey())...)
	return b, newClient(t, b, "dana", w.person)
}

// TestHostileNamesListEscapes: `ssh bastion list` shows one row per
// instance, with the control characters of Name tags escaped.
func TestHostileNamesListEscapes(t *testing.T) {
	w := newNamesWorld(t)
	_, c := w.start(t, "limits: {aws_timeout: 5s}")
	r := c.ssh(t, nil, "bastion", "list")
	if r.Code != 0 {
		t.Fatalf("ssh bastion list: exit %d, stderr %q", r.Code, r.Stderr)
	}
	t.Logf("ssh bastion list:\n%s", r.Stdout)
	if strings.ContainsAny(r.Stdout, "\x1b\u009b\r") {
		t.Errorf("the listing holds a raw escape or carriage return: %q", r.Stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("listing: got %d lines, want the header and 3 rows:\n%q", len(lines), r.Stdout)
	}
	if !strings.HasPrefix(lines[0], "TARGET") {
		t.Errorf("header: got %q, want it to start with TARGET", lines[0])
	}
	want := map[string]bool{"plain-1": false, `evil\nfake-row  ec2  us-east-1  root`: false, `\u009b2J\u009b31mred\u009b0m`: false}
	for _, line := range lines[1:] {
		found := false
		for name := range want {
			if strings.HasPrefix(line, name+" ") {
				want[name], found = true, true
			}
		}
		if !found {
			t.Errorf("row %q: not one of the three instances", line)
		}
		if !strings.Contains(line, " ec2 ") || !strings.HasSuffix(line, "ec2-user") {
			t.Errorf("row %q: want the provider and the OS user on it", line)
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("no row for %q", name)
		}
	}
}

// limitEvents returns the limit names of the bastion's limit_exceeded
// events.
func limitEvents(t *testing.T, b *bastionProc) []string {
	t.Helper()
	var out []string
	for _, line := range b.AuditLines(t) {
		var ev struct{ Type, Limit, Reason string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if ev.Type == "limit_exceeded" {
			out = append(out, ev.Limit)
		}
	}
	return out
}

// hasLimit reports whether the bastion audited limit as exceeded.
func hasLimit(t *testing.T, b *bastionProc, limit string) bool {
	for _, l := range limitEvents(t, b) {
		if l == limit {
			return true
		}
	}
	return false
}

// TestHostileNamesOwnSessionIdle: with idle_timeout 2s, `ssh -N bastion`
// (no channel at all) and an idle interactive menu are closed, the menu
// with a one-line reason, and each is audited as limit_exceeded.
func TestHostileNamesOwnSessionIdle(t *testing.T) {
	const idle = 2 * time.Second
	w := newNamesWorld(t)
	b, c := w.start(t, fmt.Sprintf("limits: {idle_timeout: %s, aws_timeout: 5s}", idle))

	t.Run("NoChannel", func(t *testing.T) {
		start := time.Now()
		r := c.ssh(t, nil, "-N", "bastion")
		took := time.Since(start)
		t.Logf("ssh -N bastion ended after %s with exit %d, stderr %q", took.Round(time.Millisecond), r.Code, r.Stderr)
		if took < idle {
			t.Errorf("ended after %s, before the idle timeout of %s", took, idle)
		}
		waitFor(t, "an idle_timeout limit_exceeded event", 20*time.Second, func() bool { return hasLimit(t, b, "idle_timeout") })
	})

	t.Run("IdleMenu", func(t *testing.T) {
		before := len(limitEvents(t, b))
		s := startPTYShell(t, c, "bastion")
		waitFor(t, "the menu's prompt; output "+s.out.String(), 20*time.Second, func() bool {
			return strings.Contains(s.out.String(), "target number or name")
		})
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("an idle menu was still open 30s after its %s idle timeout; output %q", idle, s.out.String())
		}
		if want := "bastion: no traffic for 2s; closing the idle session"; !strings.Contains(s.out.String(), want) {
			t.Errorf("menu output %q: want the reason %q", s.out.String(), want)
		}
		waitFor(t, "a second idle_timeout event", 20*time.Second, func() bool { return len(limitEvents(t, b)) > before })
	})
}

// TestHostileNamesOwnSessionMaxSession: with max_session 3s (and a long
// idle timeout), `ssh -N bastion` and a menu kept busy by typing are
// closed at the maximum length.
func TestHostileNamesOwnSessionMaxSession(t *testing.T) {
	const maxSession = 3 * time.Second
	w := newNamesWorld(t)
	b, c := w.start(t, fmt.Sprintf("limits: {max_session: %s, idle_timeout: 1h, aws_timeout: 5s}", maxSession))

	t.Run("NoChannel", func(t *testing.T) {
		start := time.Now()
		r := c.ssh(t, nil, "-N", "bastion")
		if took := time.Since(start); took < maxSession {
			t.Errorf("ended after %s, before max_session %s (exit %d, stderr %q)", took, maxSession, r.Code, r.Stderr)
		}
		waitFor(t, "a max_session limit_exceeded event", 20*time.Second, func() bool { return hasLimit(t, b, "max_session") })
	})

	t.Run("BusyMenu", func(t *testing.T) {
		s := startPTYShell(t, c, "bastion")
		waitFor(t, "the menu's prompt; output "+s.out.String(), 20*time.Second, func() bool {
			return strings.Contains(s.out.String(), "target number or name")
		})
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
	typing:
		for {
			select {
			case <-s.done:
				break typing
			case <-deadline:
				t.Fatalf("a busy menu was still open 30s after its %s max_session; output %q", maxSession, s.out.String())
			case <-tick.C:
				io.WriteString(s.tty, "99\r")
			}
		}
		if want := "bastion: session reached the maximum length of 3s; closing"; !strings.Contains(s.out.String(), want) {
			t.Errorf("menu output %q: want the reason %q", s.out.String(), want)
		}
	})
}
