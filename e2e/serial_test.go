package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// serialWorld is the fixture of the EC2 serial console tests: the AWS fake
// with serial console access enabled, its serial console endpoint on
// loopback, two instances (web-1, db-1) and a bastion that trusts the
// endpoint's host key by fingerprint. dana (ops) has serial_console; erin
// (dev) reaches every target but has not.
type serialWorld struct {
	fake     *awsfake.Server
	endpoint *awsfake.SerialConsole
	recDir   string
	bastion  *bastionProc
	dana     *client
	erin     *client
	body     string
}

const (
	serialWebID = "i-0a1b2c3d4e5f60718"
	serialDBID  = "i-0a1b2c3d4e5f60719"
)

// serialConfig is the bastion config body of the serial world, with the
// endpoint's fingerprint fp.
func serialConfig(dana, erin keypair, endpoint, fp, recDir string) string {
	return fmt.Sprintf(`  recordings: %s
users:
  - {name: dana, keys: [%q], groups: [ops]}
  - {name: erin, keys: [%q], groups: [dev]}
providers:
  ec2:
    regions: [%s]
    host_keys: tofu
    known_hosts: ec2_known_hosts
    serial_console:
      endpoint: %q
      host_keys: {%s: [%q]}
policies:
  - {groups: [ops], targets: ["serial:*"], os_users: ["*"], allow: [serial_console]}
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
limits: {aws_timeout: 10s, handshake_timeout: 10s}
`, recDir, dana.AuthorizedKey(), erin.AuthorizedKey(), region, endpoint, region, fp)
}

func newSerialWorld(t *testing.T) *serialWorld {
	t.Helper()
	fake, err := awsfake.Start(awsfake.Options{SerialConsoleTeardown: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	fake.SetSerialConsoleAccess(region, true)
	for id, name := range map[string]string{serialWebID: "web-1", serialDBID: "db-1"} {
		fake.AddEC2Instance(awsfake.EC2Instance{ID: id, Region: region, PrivateIP: "127.0.0.1", Tags: map[string]string{"Name": name}})
	}
	endpoint, err := fake.StartSerialConsole(awsfake.SerialConsoleOptions{Region: region})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endpoint.Close() })
	dir := t.TempDir()
	w := &serialWorld{fake: fake, endpoint: endpoint, recDir: filepath.Join(dir, "recordings")}
	if err := os.Mkdir(w.recDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dana, erin := newKey(t, dir, "dana"), newKey(t, dir, "erin")
	w.body = serialConfig(dana, erin, endpoint.Addr(), ssh.FingerprintSHA256(endpoint.HostKey()), w.recDir)
	w.bastion = startBastion(t, w.body, awsEnv(fake, fake.SecretAccessKey())...)
	w.dana = newClient(t, w.bastion, "dana", dana)
	w.erin = newClient(t, w.bastion, "erin", erin)
	return w
}

// console is an interactive `ssh -tt -J bastion port0@TARGET` whose stdin
// the test writes to.
type console struct {
	p     *process
	stdin interface {
		Write([]byte) (int, error)
		Close() error
	}
	at int
}

// openConsole starts ssh -tt through the bastion to target as user.
func openConsole(t *testing.T, c *client, user, target string) *console {
	t.Helper()
	cmd := exec.Command("ssh", "-F", c.ConfigPath, "-tt", "-J", "bastion", user+"@"+target)
	cmd.Env = append(os.Environ(), c.env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &console{p: startProcess(t, cmd), stdin: stdin}
}

// expect waits for want in the console's output after what was seen.
func (k *console) expect(t *testing.T, want string) {
	t.Helper()
	k.at = k.p.out.WaitFor(t, k.at, want, 60*time.Second)
}

func (k *console) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := k.stdin.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("typing %q: %v", line, err)
	}
}

// TestSerialConsole is the proof of issue 17's serial console with real
// OpenSSH: `ssh -J bastion port0@web-1.serial` gives the instance's console
// on a pty, echoing what is typed, and the session is recorded; a second
// simultaneous session is refused with AWS's error text; a person without
// serial_console and a port other than port0 are refused; an endpoint
// whose host key is not the configured fingerprint is refused.
func TestSerialConsole(t *testing.T) {
	w := newSerialWorld(t)

	k := openConsole(t, w.dana, "port0", "web-1.serial")
	k.expect(t, "web-1 login: ")
	k.typeLine(t, "root")
	k.expect(t, "[root@web-1 ~]# ")
	k.typeLine(t, "echo hello-serial")
	// The console echoes the typed line, then runs it.
	k.expect(t, "echo hello-serial\r\nhello-serial\r\n")
	waitFor(t, "the fake to hold web-1's serial session", 30*time.Second, func() bool { return w.fake.SerialConsoleConnected(serialWebID) })

	t.Run("second session refused with AWS's text", func(t *testing.T) {
		r := w.dana.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		if r.Code == 0 {
			t.Fatalf("second session: exit 0, want a refusal; stderr %q", r.Stderr)
		}
		for _, want := range []string{"The instance currently has 1 active serial console session. Only 1 session is supported at a time.", "SerialConsoleSessionLimitExceededException"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("second session stderr %q: want %q", r.Stderr, want)
			}
		}
	})

	k.stdin.Close()
	select {
	case <-k.p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("ssh did not exit 60s after its stdin closed")
	}
	if err := k.p.Err(); err != nil {
		t.Errorf("console ssh: %v, want exit 0 (the console's exit status)", err)
	}

	t.Run("recorded", func(t *testing.T) {
		var start map[string]any
		waitFor(t, "session_end in the audit log", 30*time.Second, func() bool {
			for _, ev := range serialEvents(t, w.bastion) {
				if ev["type"] == "session_start" && ev["provider"] == "serial" {
					start = ev
				}
				if ev["type"] == "session_end" && ev["provider"] == "serial" {
					return start != nil
				}
			}
			return false
		})
		path, _ := start["recording"].(string)
		if path == "" {
			t.Fatalf("session_start %v: no recording", start)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "hello-serial") {
			t.Errorf("recording %s holds no hello-serial:\n%s", path, data)
		}
		var verified bool
		for _, ev := range serialEvents(t, w.bastion) {
			if ev["type"] == "host_key_verified" && ev["provider"] == "serial" {
				verified = ev["host_key_source"] == "config" && ev["host_key_fingerprint"] == ssh.FingerprintSHA256(w.endpoint.HostKey())
			}
		}
		if !verified {
			t.Error("no host_key_verified event with the endpoint's fingerprint from config")
		}
	})

	t.Run("recorded without a pty", func(t *testing.T) {
		// stdin is not a terminal: ssh asks for no pty, and the session is
		// recorded all the same (issue 17 item 5: always recorded).
		r := w.dana.ssh(t, []byte("root\necho nopty-serial\n"), "-J", "bastion", "port0@web-1.serial")
		if r.Code != 0 || !strings.Contains(r.Stdout, "nopty-serial") {
			t.Fatalf("console without a pty: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		var rec string
		waitFor(t, "the second session's end in the audit log", 30*time.Second, func() bool {
			n := 0
			for _, ev := range serialEvents(t, w.bastion) {
				if ev["provider"] == "serial" && ev["type"] == "session_start" {
					rec, _ = ev["recording"].(string)
					if ev["term"] != nil && ev["term"] != "" {
						rec = ""
					}
				}
				if ev["provider"] == "serial" && ev["type"] == "session_end" {
					n++
				}
			}
			return n == 2
		})
		if rec == "" {
			t.Fatal("the session without a pty has no recording")
		}
		data, err := os.ReadFile(rec)
		if err != nil || !strings.Contains(string(data), "nopty-serial") {
			t.Errorf("recording %s: %v, holds no nopty-serial:\n%s", rec, err, data)
		}
	})

	t.Run("by instance id and with a region", func(t *testing.T) {
		for _, target := range []string{serialWebID + ".serial", "web-1." + region + ".serial"} {
			r := w.dana.ssh(t, []byte("root\nhostname\n"), "-J", "bastion", "port0@"+target)
			if r.Code != 0 || !strings.Contains(r.Stdout, "[root@web-1 ~]# hostname\r\nweb-1\r\n") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q", target, r.Code, r.Stdout, r.Stderr)
			}
		}
	})

	t.Run("direct mode", func(t *testing.T) {
		r := w.dana.ssh(t, []byte("root\nhostname\n"), "-l", "port0+web-1.serial", "bastion")
		if r.Code != 0 || !strings.Contains(r.Stdout, "[root@web-1 ~]# hostname\r\nweb-1\r\n") {
			t.Errorf("direct mode: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("AWS refusals", func(t *testing.T) {
		w.fake.AddEC2Instance(awsfake.EC2Instance{ID: "i-0a1b2c3d4e5f6071a", Region: region, PrivateIP: "127.0.0.1", InstanceType: "t2.micro", Tags: map[string]string{"Name": "old-1"}})
		r := w.dana.ssh(t, nil, "-J", "bastion", "port0@old-1.serial", "true")
		if want := "Only Nitro instance types are currently supported. (EC2InstanceTypeInvalidException)"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("Xen instance: exit %d, stderr %q; want %q", r.Code, r.Stderr, want)
		}
		w.fake.SetSerialConsoleAccess(region, false)
		r = w.dana.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		w.fake.SetSerialConsoleAccess(region, true)
		if want := "Your account is not authorized to use the EC2 Serial Console."; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("access disabled: exit %d, stderr %q; want %q", r.Code, r.Stderr, want)
		}
		w.fake.SetFault("SendSerialConsoleSSHPublicKey", awsfake.Fault{ThrottleFirst: 100})
		r = w.dana.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		w.fake.ClearFaults()
		if want := "have been throttled. Wait a while and try again. (ThrottlingException)"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("throttled: exit %d, stderr %q; want %q", r.Code, r.Stderr, want)
		}
		if n := strings.Count(r.Stderr, "bastion:"); n != 1 {
			t.Errorf("throttled: %d lines from the bastion, want one: %q", n, r.Stderr)
		}
	})

	t.Run("person without serial_console refused", func(t *testing.T) {
		r := w.erin.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		if want := "no policy lets erin use serial console on web-1"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("erin: exit %d, stderr %q; want a refusal with %q", r.Code, r.Stderr, want)
		}
		before := w.fake.CallCount("SendSerialConsoleSSHPublicKey")
		w.erin.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		if n := w.fake.CallCount("SendSerialConsoleSSHPublicKey"); n != before {
			t.Errorf("SendSerialConsoleSSHPublicKey calls: %d, want %d (no push for erin)", n, before)
		}
		list := w.erin.ssh(t, nil, "bastion", "list")
		if strings.Contains(list.Stdout, "serial") {
			t.Errorf("erin's list shows serial consoles:\n%s", list.Stdout)
		}
	})

	t.Run("listed", func(t *testing.T) {
		list := w.dana.ssh(t, nil, "bastion", "list")
		var row []string
		for _, l := range strings.Split(list.Stdout, "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "web-1" && f[1] == "serial" {
				row = f
			}
		}
		if row == nil || row[2] != region || row[3] != "port0" {
			t.Errorf("dana's list %q: want a row web-1 serial %s port0", list.Stdout, region)
		}
	})

	t.Run("only port0", func(t *testing.T) {
		r := w.dana.ssh(t, nil, "-J", "bastion", "root@web-1.serial", "true")
		if want := "a serial console is logged in to as its port, port0, the only one AWS offers"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("root@web-1.serial: exit %d, stderr %q; want a refusal with %q", r.Code, r.Stderr, want)
		}
	})

	t.Run("refused without recordings", func(t *testing.T) {
		body := strings.Replace(w.body, "  recordings: "+w.recDir+"\n", "", 1)
		b := startBastion(t, body, awsEnv(w.fake, w.fake.SecretAccessKey())...)
		c := newClient(t, b, "dana", w.dana.Key)
		before := w.fake.CallCount("SendSerialConsoleSSHPublicKey")
		r := c.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
		if want := "sessions to this target are always recorded, and this bastion has no audit.recordings"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("no recordings: exit %d, stderr %q; want a refusal with %q", r.Code, r.Stderr, want)
		}
		if n := w.fake.CallCount("SendSerialConsoleSSHPublicKey"); n != before {
			t.Errorf("SendSerialConsoleSSHPublicKey calls: %d, want %d (refused before the push)", n, before)
		}
	})

	t.Run("wrong endpoint host key refused", func(t *testing.T) {
		other := newKey(t, t.TempDir(), "not_the_endpoint")
		body := strings.Replace(w.body, ssh.FingerprintSHA256(w.endpoint.HostKey()), ssh.FingerprintSHA256(other.Signer.PublicKey()), 1)
		b := startBastion(t, body, awsEnv(w.fake, w.fake.SecretAccessKey())...)
		c := newClient(t, b, "dana", w.dana.Key)
		r := c.ssh(t, nil, "-J", "bastion", "port0@db-1.serial", "true")
		if want := "which is not in providers.ec2.serial_console.host_keys." + region; r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("db-1.serial with a wrong fingerprint: exit %d, stderr %q; want a refusal with %q", r.Code, r.Stderr, want)
		}
		var mismatch bool
		for _, ev := range serialEvents(t, b) {
			mismatch = mismatch || ev["type"] == "host_key_mismatch"
		}
		if !mismatch {
			t.Error("no host_key_mismatch event")
		}
		if w.fake.SerialConsoleConnected(serialDBID) {
			t.Error("db-1's serial session is connected: the bastion logged in to an endpoint it does not trust")
		}
	})
}

// serialEvents returns b's audit events.
func serialEvents(t *testing.T, b *bastionProc) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range b.AuditLines(t) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err == nil {
			out = append(out, ev)
		}
	}
	return out
}

// TestDemoSerialConsole uses the demo's serial console as a newcomer would:
// `ssh bastion list` shows api-1's console, and `ssh -J bastion
// port0@api-1.serial` gives its ttyS0, a login prompt and a shell.
func TestDemoSerialConsole(t *testing.T) {
	d := startDemo(t, t.TempDir(), nil)
	sshConfig := filepath.Join(d.state, "ssh_config")
	out, err := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "bastion", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("list: %v %q", err, out)
	}
	var listed bool
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		listed = listed || (len(f) >= 2 && strings.HasPrefix(f[0], "api-1") && f[1] == "serial")
	}
	if !listed {
		t.Errorf("list shows no api-1 serial console:\n%s", out)
	}
	cmd := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "-J", "bastion", "port0@api-1.serial")
	cmd.Stdin = strings.NewReader("ec2-user\nhostname\n")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "api-1 login: ec2-user") || !strings.Contains(string(out), "[ec2-user@api-1 ~]$ hostname\r\napi-1\r\n") {
		t.Errorf("demo serial console: %v, output %q", err, out)
	}
}
