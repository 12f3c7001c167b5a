package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capsWorld is a bastion in front of a real sshd (static target web-1)
// with one person, bob, whose config lines the test chooses: the world for
// the capability, certificate and reload hostile cases.
type capsWorld struct {
	b        *bastionProc
	bob      *client
	bobKey   keypair
	upKey    keypair
	up       *sshd
	me       string
	dir      string
	sshdLine string
}

// newCapsWorld starts sshd and a bastion whose config is body(w) (users,
// policies and the like; the static provider line is w.sshdLine).
func newCapsWorld(t *testing.T, body func(w *capsWorld) string) *capsWorld {
	t.Helper()
	w := &capsWorld{me: currentUser(t), dir: t.TempDir()}
	w.upKey = newKey(t, w.dir, "upstream_key")
	w.up = startSSHD(t, sshdOptions{AuthorizedKeys: []string{w.upKey.AuthorizedKey()}})
	w.bobKey = newKey(t, w.dir, "bob")
	w.sshdLine = fmt.Sprintf("providers:\n  static:\n    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}\n",
		w.up.Addr, w.me, w.upKey.Private, w.up.HostKey.AuthorizedKey())
	w.b = startBastion(t, body(w))
	w.bob = newClient(t, w.b, "bob", w.bobKey)
	return w
}

// reload rewrites the bastion's config body and sends SIGHUP, waiting for
// the reload to be taken.
func (w *capsWorld) reload(t *testing.T, body string) {
	t.Helper()
	data, err := os.ReadFile(w.b.Config)
	if err != nil {
		t.Fatal(err)
	}
	head, _, found := strings.Cut(string(data), "users:")
	if !found {
		t.Fatalf("no users key in %s", w.b.Config)
	}
	n := countType(t, w.b, "config_reloaded")
	writeFile(t, w.b.Config, head+body, 0o600)
	w.b.signal(t, syscall.SIGHUP)
	waitFor(t, "the reload", 30*time.Second, func() bool { return countType(t, w.b, "config_reloaded") > n })
}

// shortDir returns a fresh directory with a short path, for unix sockets
// (sun_path is 108 bytes and ssh adds a suffix to a ControlPath).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestHostileReloadControlMaster opens an OpenSSH ControlMaster through
// ProxyJump while port forwarding is allowed, reloads a config that takes
// port forwarding away, and then asks the live master for more: a new
// connection on the -L forward opened before the reload, a new -L and a new
// -R added through the control socket. Each is refused and carries no data.
func TestHostileReloadControlMaster(t *testing.T) {
	policy := func(allow string) string {
		return fmt.Sprintf("policies:\n  - {groups: [ops], targets: [\"*\"], os_users: [\"*\"]%s}\n", allow)
	}
	var users string
	w := newCapsWorld(t, func(w *capsWorld) string {
		users = fmt.Sprintf("users:\n  - {name: bob, keys: [%q], groups: [ops]}\n", w.bobKey.AuthorizedKey())
		return users + w.sshdLine + policy(", allow: [port_forwarding]")
	})
	page := httpServer(t, "page")
	sock := filepath.Join(shortDir(t), "m")
	p1 := freePort(t)
	master := startProcess(t, exec.Command("ssh", "-F", w.bob.ConfigPath, "-M", "-S", sock, "-N",
		"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:%s", p1, page), "-J", "bastion", w.me+"@web-1"))
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", p1), 30*time.Second)
	waitFor(t, "the control socket", 30*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", p1)); err != nil || got != "page" {
		t.Fatalf("-L before the reload: got %q, %v; want the page", got, err)
	}

	w.reload(t, users+w.sshdLine+policy(""))

	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", p1)); err == nil {
		t.Errorf("new connection on the -L opened before the reload: got %q, want it refused", got)
	}
	p2 := freePort(t)
	mux := exec.Command("ssh", "-F", w.bob.ConfigPath, "-S", sock, "-O", "forward", "-L", fmt.Sprintf("127.0.0.1:%d:%s", p2, page), w.me+"@web-1")
	if out, err := mux.CombinedOutput(); err == nil {
		// The listener is the client's own; only the channels it opens
		// reach the bastion.
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", p2), 30*time.Second)
		if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", p2)); err == nil {
			t.Errorf("-O forward -L after the reload: got %q, want it refused", got)
		}
	} else {
		t.Logf("-O forward -L refused by the client: %v %s", err, out)
	}
	p3 := freePort(t)
	mux = exec.Command("ssh", "-F", w.bob.ConfigPath, "-S", sock, "-O", "forward", "-R", fmt.Sprintf("127.0.0.1:%d:%s", p3, page), w.me+"@web-1")
	if out, err := mux.CombinedOutput(); err == nil {
		t.Errorf("-O forward -R after the reload: got success %q, want it refused", out)
	}
	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", p3)); err == nil {
		t.Errorf("-R after the reload: got %q through the instance, want no listener", got)
	}
	if !auditHas(t, w.b, "policy_denied", "no policy lets bob use port forwarding") {
		t.Error("audit log: no policy_denied for port forwarding after the reload")
	}
	select {
	case <-master.done:
		t.Fatalf("the master exited: %s", master.out.String())
	default:
	}
}

// TestHostileSCPOnlySmuggling gives bob a policy that denies exec, shell
// and sftp (so only scp is left) and tries to run other programs behind a
// command line that begins with scp: a command, an interactive shell with a
// pty, and an SFTP server. Each is refused with the reason on stderr; real
// scp -O transfers still work, in both modes.
func TestHostileSCPOnlySmuggling(t *testing.T) {
	w := newCapsWorld(t, func(w *capsWorld) string {
		return fmt.Sprintf("users:\n  - {name: bob, keys: [%q], groups: [ops]}\n", w.bobKey.AuthorizedKey()) + w.sshdLine +
			"policies:\n  - {groups: [ops], targets: [\"*\"], os_users: [\"*\"], deny: [exec, shell, sftp]}\n"
	})
	const refusal = "no policy lets bob use exec on web-1"
	for _, mode := range modes {
		t.Run(mode+"/command", func(t *testing.T) {
			r := w.bob.ssh(t, nil, append(dest(mode, w.me, "web-1"), "scp 2>/dev/null; echo smuggled-$((40+2))")...)
			if strings.Contains(r.Stdout, "smuggled-42") || !strings.Contains(r.Stderr, refusal) {
				t.Errorf("got exit %d stdout %q stderr %q; want the command refused with %q", r.Code, r.Stdout, r.Stderr, refusal)
			}
		})
	}
	t.Run("pty shell", func(t *testing.T) {
		r := w.bob.ssh(t, []byte("echo shell-$((40+2))\nexit\n"), "-tt", "-J", "bastion", w.me+"@web-1", "scp 2>/dev/null; exec sh -i")
		if strings.Contains(r.Stdout, "shell-42") || !strings.Contains(r.Stdout+r.Stderr, refusal) {
			t.Errorf("got exit %d stdout %q stderr %q; want the shell refused with %q", r.Code, r.Stdout, r.Stderr, refusal)
		}
	})
	t.Run("sftp server", func(t *testing.T) {
		dir := t.TempDir()
		r := w.bob.run(t, []byte("put "+w.bob.Key.Public+" "+filepath.Join(dir, "smuggled")+"\n"), "sftp", "-b", "-",
			"-s", "scp 2>/dev/null; exec /usr/lib/openssh/sftp-server", "-J", "bastion", w.me+"@web-1")
		if _, err := os.Stat(filepath.Join(dir, "smuggled")); err == nil || r.Code == 0 {
			t.Errorf("got exit %d stderr %q and the file written; want the SFTP server refused", r.Code, r.Stderr)
		}
	})
	if !auditHas(t, w.b, "policy_denied", `"capability":"exec"`) {
		t.Error("audit log: no policy_denied for exec")
	}
	for _, mode := range modes {
		t.Run(mode+"/scp -O", func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.txt")
			writeFile(t, src, "scp payload\n", 0o644)
			userHost, opts := remote(mode, w.me, "web-1")
			up := filepath.Join(dir, "up.txt")
			if r := w.bob.run(t, nil, "scp", append(append([]string{"-O", "-q", "-p"}, opts...), src, userHost+":"+up)...); r.Code != 0 {
				t.Fatalf("scp -O up: exit %d: %s", r.Code, r.Stderr)
			}
			down := filepath.Join(dir, "down.txt")
			if r := w.bob.run(t, nil, "scp", append(append([]string{"-O", "-q"}, opts...), userHost+":"+up, down)...); r.Code != 0 {
				t.Fatalf("scp -O down: exit %d: %s", r.Code, r.Stderr)
			}
			if got, err := os.ReadFile(down); err != nil || string(got) != "scp payload\n" {
				t.Fatalf("scp -O round trip: got %q, %v", got, err)
			}
		})
	}
}

// allowed says which of the restricted capabilities a login should get.
type allowed struct{ forward, pty, agent bool }

// checkRestricted drives -L, -R, a pty (ssh -tt) and agent forwarding (-A)
// through the real OpenSSH client for c in mode, where the policy allows
// all of them, and checks that each works or is refused as want says.
func checkRestricted(t *testing.T, w *capsWorld, c *client, mode string, want allowed) {
	t.Helper()
	page := httpServer(t, "page")
	t.Run("local forward", func(t *testing.T) {
		lport := freePort(t)
		startProcess(t, exec.Command("ssh", append([]string{"-F", c.ConfigPath, "-N", "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, page)}, dest(mode, w.me, "web-1")...)...))
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", lport), 30*time.Second)
		got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", lport))
		if ok := err == nil && got == "page"; ok != want.forward {
			t.Errorf("-L: got %q, %v; want allowed=%v", got, err, want.forward)
		}
	})
	t.Run("remote forward", func(t *testing.T) {
		rport := freePort(t)
		p := startProcess(t, exec.Command("ssh", append([]string{"-F", c.ConfigPath, "-N", "-o", "ExitOnForwardFailure=yes",
			"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, page)}, dest(mode, w.me, "web-1")...)...))
		if want.forward {
			waitListening(t, fmt.Sprintf("127.0.0.1:%d", rport), 30*time.Second)
			return
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatal("-R with ExitOnForwardFailure did not exit: the forward was granted")
		}
		if !strings.Contains(p.out.String(), "remote port forwarding failed") {
			t.Errorf("-R: got %q, want the forward refused", p.out.String())
		}
	})
	t.Run("pty", func(t *testing.T) {
		r := c.ssh(t, nil, append(append([]string{"-tt"}, dest(mode, w.me, "web-1")...), "tty; true")...)
		gotPTY := strings.Contains(r.Stdout, "/dev/pts/")
		if gotPTY != want.pty {
			t.Errorf("ssh -tt tty: got stdout %q stderr %q; want a pty=%v", r.Stdout, r.Stderr, want.pty)
		}
		if !want.pty && !strings.Contains(r.Stdout+r.Stderr, "does not permit a pty") {
			t.Errorf("ssh -tt: got stderr %q, want the reason", r.Stderr)
		}
	})
	t.Run("agent", func(t *testing.T) {
		sock, fp := startAgent(t)
		c.env = []string{"SSH_AUTH_SOCK=" + sock}
		defer func() { c.env = nil }()
		r := c.ssh(t, nil, append(append([]string{"-A"}, dest(mode, w.me, "web-1")...), "ssh-add -l")...)
		if got := strings.Contains(r.Stdout, fp); got != want.agent {
			t.Errorf("-A ssh-add -l: got exit %d %q stderr %q; want the agent=%v", r.Code, r.Stdout, r.Stderr, want.agent)
		}
	})
}

// allCaps is a policy line granting ops everything there is.
const allCaps = "policies:\n  - {groups: [ops], targets: [\"*\"], os_users: [\"*\"], allow: [port_forwarding, agent_forwarding, x11]}\n"

// TestHostileCertRestrictions logs in with OpenSSH user certificates whose
// extensions take capabilities away (ssh-keygen -O no-port-forwarding -O
// no-pty, and -O clear) under a policy that grants everything: the
// certificate wins, in jump and direct mode, as it would with sshd.
func TestHostileCertRestrictions(t *testing.T) {
	var ca keypair
	w := newCapsWorld(t, func(w *capsWorld) string {
		ca = newKey(t, w.dir, "user_ca")
		return fmt.Sprintf("users:\n  - {name: carol, groups: [ops]}\ntrusted_user_ca_keys: [%q]\n", ca.AuthorizedKey()) + w.sshdLine + allCaps
	})
	cert := func(name string, opts ...string) *client {
		key := newKey(t, w.dir, name)
		args := append([]string{"-q", "-s", ca.Private, "-I", name, "-n", "carol", "-V", "-5m:+1h"}, opts...)
		if out, err := exec.Command("ssh-keygen", append(args, key.Public)...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
		}
		return newClient(t, w.b, "carol", key)
	}
	tests := []struct {
		name string
		c    *client
		want allowed
	}{
		{"no-port-forwarding no-pty", cert("nofwd", "-O", "no-port-forwarding", "-O", "no-pty"), allowed{agent: true}},
		{"clear", cert("clear", "-O", "clear"), allowed{}},
		{"default extensions", cert("plain"), allowed{forward: true, pty: true, agent: true}},
	}
	for _, tc := range tests {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) { checkRestricted(t, w, tc.c, mode, tc.want) })
		}
	}
	if !auditHas(t, w.b, "policy_denied", "certificate does not permit") {
		t.Error("audit log: no policy_denied naming the certificate")
	}
	t.Run("menu without a pty", func(t *testing.T) {
		r := tests[1].c.ssh(t, nil, "-tt", "bastion")
		if !strings.Contains(r.Stdout+r.Stderr, "your certificate does not permit a pty") {
			t.Errorf("ssh -tt bastion: got stdout %q stderr %q; want the pty refused with the reason", r.Stdout, r.Stderr)
		}
	})
	t.Run("source-address", func(t *testing.T) {
		c := cert("srcaddr", "-O", "source-address=10.0.0.0/8")
		for _, mode := range modes {
			r := c.ssh(t, nil, append(dest(mode, w.me, "web-1"), "echo in")...)
			if r.Code == 0 || strings.Contains(r.Stdout, "in") || !strings.Contains(r.Stderr, "Permission denied") {
				t.Errorf("%s: got exit %d %q %q, want Permission denied", mode, r.Code, r.Stdout, r.Stderr)
			}
		}
	})
	t.Run("verify-required", func(t *testing.T) {
		r := cert("verify", "-O", "verify-required").ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo in")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("got exit %d %q %q, want Permission denied", r.Code, r.Stdout, r.Stderr)
		}
		if !auditHas(t, w.b, "auth_failure", "verify-required cannot be checked") {
			t.Error("audit log: no auth_failure saying why verify-required is refused")
		}
	})
	t.Run("force-command", func(t *testing.T) {
		c := cert("forced", "-O", "force-command=echo forced:$SSH_ORIGINAL_COMMAND")
		for _, mode := range modes {
			r := c.ssh(t, nil, append(dest(mode, w.me, "web-1"), "echo 'it'\\''s'; id")...)
			if want := "forced:echo 'it'\\''s'; id\n"; r.Code != 0 || r.Stdout != want {
				t.Errorf("%s: got exit %d stdout %q stderr %q; want %q", mode, r.Code, r.Stdout, r.Stderr, want)
			}
		}
	})
}

// TestHostileKeyOptions gives people key lines with authorized_keys
// options and checks each is honoured as sshd honours it: restrict takes
// forwarding, the pty and the agent away in both modes, from= refuses a
// login from elsewhere, command= forces (with SSH_ORIGINAL_COMMAND),
// expiry-time= in the past refuses, permitopen= limits -L to its
// destination, and an option the bastion cannot
// honour fails check-config with the line and the option's name.
func TestHostileKeyOptions(t *testing.T) {
	people := []string{"dave", "erin", "frank", "gina", "hank"}
	keys := map[string]keypair{}
	open, closed := httpServer(t, "open"), httpServer(t, "closed")
	w := newCapsWorld(t, func(w *capsWorld) string {
		opts := map[string]string{
			"hank":  fmt.Sprintf(`permitopen="%s"`, open),
			"dave":  "restrict",
			"erin":  `from="10.0.0.0/8"`,
			"frank": `restrict,command="echo forced:$SSH_ORIGINAL_COMMAND"`,
			"gina":  `expiry-time="20200101"`,
		}
		body := "users:\n"
		for _, p := range people {
			keys[p] = newKey(t, w.dir, p)
			body += fmt.Sprintf("  - {name: %s, keys: ['%s %s'], groups: [ops]}\n", p, opts[p], keys[p].AuthorizedKey())
		}
		return body + w.sshdLine + allCaps
	})
	client := func(p string) *client { return newClient(t, w.b, p, keys[p]) }
	for _, mode := range modes {
		t.Run("restrict/"+mode, func(t *testing.T) { checkRestricted(t, w, client("dave"), mode, allowed{}) })
	}
	for _, tc := range []struct{ who, reason string }{{"erin", "key_options"}, {"gina", "key_options"}} {
		t.Run(tc.who, func(t *testing.T) {
			r := client(tc.who).ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo in")
			if r.Code == 0 || strings.Contains(r.Stdout, "in") || !strings.Contains(r.Stderr, "Permission denied") {
				t.Errorf("got exit %d %q %q, want Permission denied", r.Code, r.Stdout, r.Stderr)
			}
			if !auditHas(t, w.b, "auth_failure", `"reason":"`+tc.reason+`"`) {
				t.Errorf("audit log: no auth_failure with reason %s", tc.reason)
			}
		})
	}
	t.Run("command", func(t *testing.T) {
		for _, mode := range modes {
			r := client("frank").ssh(t, nil, append(dest(mode, w.me, "web-1"), "echo asked; id")...)
			if r.Code != 0 || r.Stdout != "forced:echo asked; id\n" {
				t.Errorf("%s: got exit %d stdout %q stderr %q; want the forced command, told what was asked", mode, r.Code, r.Stdout, r.Stderr)
			}
		}
	})
	t.Run("permitopen", func(t *testing.T) {
		for _, tc := range []struct {
			dest string
			ok   bool
		}{{open, true}, {closed, false}} {
			lport := freePort(t)
			startProcess(t, exec.Command("ssh", "-F", client("hank").ConfigPath, "-N", "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, tc.dest), "-J", "bastion", w.me+"@web-1"))
			waitListening(t, fmt.Sprintf("127.0.0.1:%d", lport), 30*time.Second)
			got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", lport))
			if (err == nil) != tc.ok {
				t.Errorf("-L to %s: got %q, %v; want allowed=%v", tc.dest, got, err, tc.ok)
			}
		}
		if !auditHas(t, w.b, "policy_denied", "your key entry does not permit port forwarding to "+closed) {
			t.Error("audit log: no policy_denied for the destination permitopen leaves out")
		}
	})
	t.Run("check-config", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, cfg, fmt.Sprintf("host_key: hk\nhost_ca_key: hca\nusers:\n  - name: hal\n    keys:\n      - 'restrict %s'\n      - 'tunnel=\"0\" %s'\n",
			keys["dave"].AuthorizedKey(), keys["erin"].AuthorizedKey()), 0o600)
		out, err := exec.Command(bastionBin, "check-config", "--config", cfg).CombinedOutput()
		want := cfg + ":7: users[0].keys[1]: key option tunnel is not supported"
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("check-config: got %v\n%s\nwant a failure with %q", err, out, want)
		}
		if strings.Contains(string(out), "keys[0]") {
			t.Errorf("check-config: got %s, want restrict accepted", out)
		}
	})
}

// TestCheckConfigExecWarning runs check-config on a policy that denies
// shell and sftp but not exec: the file is valid (exit 0), and a warning
// with its line says the denial does not hold.
func TestCheckConfigExecWarning(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t, dir, "k")
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("host_key: hk\nhost_ca_key: hca\nusers:\n  - {name: al, keys: [%q], groups: [dev]}\npolicies:\n  - {groups: [dev], targets: [\"*\"], os_users: [\"*\"], deny: [shell, sftp]}\n", key.AuthorizedKey()), 0o600)
	out, err := exec.Command(bastionBin, "check-config", "--config", cfg).CombinedOutput()
	want := "warning: " + cfg + ":6: policies[0].deny: denies shell and sftp but not exec"
	if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), ": ok") {
		t.Errorf("check-config: got %v\n%s\nwant exit 0 with %q", err, out, want)
	}
}
