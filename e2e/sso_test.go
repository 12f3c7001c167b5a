package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"bastion/internal/testidp"
	"bastion/internal/testkit"
)

// The SSO proof (issue 14): real OpenSSH under a pty against the real
// bastion and a real OpenID provider (internal/testidp), the person's
// browser being the test posting the IdP's form.

// SSO people at the IdP. Nobody here is a configured user: their names
// and groups come from the ID token alone.
var (
	ssoAlice = testidp.User{Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"dev", "qa"}, Subject: "sub-alice-7f3a"}
	ssoBob   = testidp.User{Username: "bob", Email: "bob@example.com", EmailVerified: true, Groups: []string{"ops"}, Subject: "sub-bob-91c2"}
	// Refused by allowed_domains [example.com]: another domain, and an
	// address the IdP has not verified.
	ssoEve     = testidp.User{Username: "eve", Email: "eve@elsewhere.test", EmailVerified: true, Groups: []string{"ops"}}
	ssoMallory = testidp.User{Username: "mallory", Email: "mallory@example.com", EmailVerified: false, Groups: []string{"ops"}}
	// The IdP's carol has the name of the configured user carol: without
	// merge_configured_users her login is refused.
	ssoCarol = testidp.User{Username: "carol", Email: "carol@example.com", EmailVerified: true, Groups: []string{"dev"}, Subject: "sub-carol-idp"}
)

// Strings the person reads (SSO-CONTRACT.md).
const (
	msgNotLoggedIn  = "bastion: this key is not logged in; run 'ssh <bastion> login' once, interactively"
	msgDenied       = "bastion: login refused: the identity provider denied the request"
	msgExpired      = "bastion: login refused: the code expired before it was approved"
	msgBadToken     = "bastion: login refused: the identity provider's token was not valid ("
	msgUnreachable  = "bastion: login refused: cannot reach the identity provider; try again later"
	ssoDeviceCodeTT = 4 * time.Second
)

// promptRE matches the device-flow prompt: the verification URI and the
// user code (the OP's codes are 4+4 letters of its base-20 alphabet).
var promptRE = regexp.MustCompile(`open (\S+) and enter the code ([A-Z]{4}-[A-Z]{4})`)

// ssoWorld is a bastion with sso on a test IdP, in front of one real sshd
// reachable as two static targets: web-1, which group dev may reach, and
// db-1, which only group ops may reach.
type ssoWorld struct {
	idp   *testidp.IdP
	b     *bastionProc
	me    string
	dir   string
	carol *client
}

// ssoBody is the bastion config (without listen, host keys and audit) of
// an SSO world: extra is appended (more keys of sso: go in ssoExtra,
// indented by four spaces).
func ssoBody(t *testing.T, idp *testidp.IdP, me, dir, ssoExtra, extra string) string {
	t.Helper()
	return ssoBodyLimits(t, idp, me, dir, ssoExtra, "", extra)
}

// ssoBodyLimits is ssoBody with more keys of limits (", key: value").
func ssoBodyLimits(t *testing.T, idp *testidp.IdP, me, dir, ssoExtra, limits, extra string) string {
	t.Helper()
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	target := func(name string) string {
		return fmt.Sprintf("    - {name: %s, address: %q, user: %s, private_key: %q, host_key: %q}\n", name, up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey())
	}
	return "providers:\n  static:\n" + target("web-1") + target("db-1") +
		"policies:\n" +
		"  - {groups: [dev], targets: [\"web-1\"], os_users: [\"*\"]}\n" +
		"  - {groups: [ops], targets: [\"*\"], os_users: [\"*\"]}\n" +
		// Refused logins are the point here: no per-address penalty.
		"limits: {failed_auth_per_minute: 0" + limits + "}\n" +
		fmt.Sprintf("sso:\n  issuer: %s\n  client_id: bastion\n", idp.Issuer()) + ssoExtra + extra
}

func newSSOWorld(t *testing.T, o testidp.Options, ssoExtra string) *ssoWorld {
	t.Helper()
	idp := testidp.Start(t, o)
	dir := t.TempDir()
	me := currentUser(t)
	ck := newKey(t, dir, "carol")
	b := startBastion(t, ssoBody(t, idp, me, dir, ssoExtra, fmt.Sprintf("users:\n  - {name: carol, keys: [%q], groups: [ops]}\n", ck.AuthorizedKey())))
	return &ssoWorld{idp: idp, b: b, me: me, dir: dir, carol: newClient(t, b, "carol", ck)}
}

// ssoClient is an OpenSSH client set-up for one key: batch runs as
// newClient's (BatchMode yes), and interactive, the same with BatchMode
// off in the config file itself, so that the jump leg ssh -J spawns
// (which reads -F, not -o) prompts too.
type ssoClient struct {
	*client
	interactiveConfig string
	fingerprint       string
}

func newSSOClient(t *testing.T, b *bastionProc, person, keyName string) *ssoClient {
	t.Helper()
	return ssoClientFor(t, b, person, newKey(t, t.TempDir(), keyName))
}

// ssoClientFor is newSSOClient for an existing key.
func ssoClientFor(t *testing.T, b *bastionProc, person string, key keypair) *ssoClient {
	t.Helper()
	c := newClient(t, b, person, key)
	cfg, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	ic := filepath.Join(c.Dir, "ssh_config_interactive")
	writeFile(t, ic, strings.Replace(string(cfg), "BatchMode yes", "BatchMode no", 1), 0o644)
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key.AuthorizedKey()))
	if err != nil {
		t.Fatal(err)
	}
	return &ssoClient{client: c, interactiveConfig: ic, fingerprint: ssh.FingerprintSHA256(pub)}
}

// ptySSH is an ssh run under a real pty, as in a person's terminal: its
// stdin and stdout are the pty; its stderr, where OpenSSH prints banners
// and keyboard-interactive instructions, is kept apart to be asserted on.
type ptySSH struct {
	cmd    *exec.Cmd
	tty    *os.File
	out    *syncBuffer // the terminal
	stderr *syncBuffer
	done   chan struct{}
}

// ptyResult is a finished ptySSH.
type ptyResult struct {
	Code        int
	Tty, Stderr string
}

func startPTYSSH(t *testing.T, configPath string, args ...string) *ptySSH {
	t.Helper()
	cmd := exec.Command("ssh", append([]string{"-F", configPath}, args...)...)
	p := &ptySSH{cmd: cmd, out: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	p.tty = tty
	go func() {
		io.Copy(p.out, tty)
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		cmd.Wait()
		tty.Close()
	})
	return p
}

// prompt waits for the device-flow prompt on stderr and returns the URI
// and code.
func (p *ptySSH) prompt(t *testing.T) (uri, code string) {
	t.Helper()
	var m []string
	waitFor(t, "the device-flow prompt", 30*time.Second, func() bool {
		m = promptRE.FindStringSubmatch(p.stderr.String())
		select {
		case <-p.done:
			if m == nil {
				t.Fatalf("ssh ended without the prompt; stderr %q terminal %q", p.stderr.String(), p.out.String())
			}
		default:
		}
		return m != nil
	})
	return m[1], m[2]
}

// wait waits for ssh to end.
func (p *ptySSH) wait(t *testing.T, timeout time.Duration) ptyResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("ssh did not end in %s; stderr %q terminal %q", timeout, p.stderr.String(), p.out.String())
	}
	p.cmd.Wait()
	return ptyResult{Code: p.cmd.ProcessState.ExitCode(), Tty: p.out.String(), Stderr: p.stderr.String()}
}

// login runs ssh interactively with args, checks the prompt names the
// IdP's verification page and the code the IdP holds pending, calls
// decide with the code, and returns how ssh ended.
func (w *ssoWorld) login(t *testing.T, c *ssoClient, decide func(code string) error, args ...string) ptyResult {
	t.Helper()
	p := startPTYSSH(t, c.interactiveConfig, args...)
	uri, code := p.prompt(t)
	if want := w.idp.Issuer() + "/device"; uri != want {
		t.Errorf("prompt: got verification URI %q, want %q", uri, want)
	}
	if want := fmt.Sprintf("or open %s/device?user_code=%s", w.idp.Issuer(), code); !strings.Contains(p.stderr.String(), want) {
		t.Errorf("prompt %q: want %q", p.stderr.String(), want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pending, err := w.idp.WaitPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pending != code {
		t.Errorf("prompt shows code %s, the IdP holds %s pending", code, pending)
	}
	if err := decide(code); err != nil {
		t.Fatalf("at the IdP: %v", err)
	}
	return p.wait(t, ssoDeviceCodeTT+30*time.Second)
}

// approve returns a decision that approves as user.
func (w *ssoWorld) approve(user string) func(string) error {
	return func(code string) error { return w.idp.Approve(code, user) }
}

// leaveAlone is the decision of a person who never approves.
func leaveAlone(string) error { return nil }

// refusalLine returns the one line of out that starts the bastion's
// refusal, trimmed.
func refusalLine(out string) string {
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "bastion: login refused") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// auditEvents returns the audit log's events.
func auditEvents(t *testing.T, b *bastionProc) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, line := range b.AuditLines(t) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// str returns ev[k] as a string.
func str(ev map[string]any, k string) string {
	s, _ := ev[k].(string)
	return s
}

// TestSSOLogin is the person's story with plain OpenSSH: an unknown key
// logs in through the IdP on the jump leg of ssh -J, is silent (BatchMode)
// afterwards, whoami and login say who, groups from the claim decide
// policy, logout makes it prompt again; a denial, an expired code, a token
// for another audience or signed by an unknown key are refused with the
// reason, as are identities outside allowed_domains and one claiming a
// configured user's name; the IdP down leaves bound keys working and
// refuses new logins in one line; the audit log holds it all; a reload's
// revoked_keys reach a bound key.
func TestSSOLogin(t *testing.T) {
	w := newSSOWorld(t, testidp.Options{Users: []testidp.User{ssoAlice, ssoBob, ssoEve, ssoMallory, ssoCarol}, DeviceCodeTTL: ssoDeviceCodeTT, Interval: time.Second},
		"  session_ttl: 1h\n  allowed_domains: [example.com]\n")
	alice := newSSOClient(t, w.b, "alice", "alice")
	jump := func(target, cmd string) []string { return append(dest("jump", w.me, target), cmd) }
	ok := t.Run("login through ssh -J", func(t *testing.T) {
		r := w.login(t, alice, w.approve("alice"), jump("web-1", "echo sso-inside")...)
		if r.Code != 0 || !strings.Contains(r.Tty, "sso-inside") {
			t.Fatalf("got exit %d terminal %q stderr %q, want sso-inside", r.Code, r.Tty, r.Stderr)
		}
		if strings.Contains(r.Stderr, "bastion: login refused") {
			t.Errorf("a refusal on an approved login: %q", r.Stderr)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("a configured user needs no login", func(t *testing.T) {
		r := w.carol.ssh(t, nil, jump("db-1", "echo carol")...)
		if r.Code != 0 || r.Stdout != "carol\n" || strings.Contains(r.Stderr, "bastion:") {
			t.Errorf("carol: got exit %d stdout %q stderr %q, want carol and no bastion message", r.Code, r.Stdout, r.Stderr)
		}
		r = w.carol.ssh(t, nil, "bastion", "login")
		if r.Code != 0 || !strings.Contains(r.Stdout, "carol is a configured user and needs no login") {
			t.Errorf("carol's login: got exit %d stdout %q", r.Code, r.Stdout)
		}
		r = w.carol.ssh(t, nil, "bastion", "whoami")
		if !strings.Contains(r.Stdout, "user: carol\n") || !strings.Contains(r.Stdout, "via: key SHA256:") || strings.Contains(r.Stdout, "expires:") {
			t.Errorf("carol's whoami: got %q, want user carol via her key, no expiry", r.Stdout)
		}
	})

	t.Run("bound key is silent", func(t *testing.T) {
		r := alice.ssh(t, nil, jump("web-1", "echo again")...)
		if r.Code != 0 || r.Stdout != "again\n" {
			t.Fatalf("got exit %d stdout %q stderr %q, want again", r.Code, r.Stdout, r.Stderr)
		}
		if r.Stderr != "" {
			t.Errorf("a bound key's connection printed %q, want nothing", r.Stderr)
		}
	})

	t.Run("whoami", func(t *testing.T) {
		r := alice.ssh(t, nil, "bastion", "whoami")
		if r.Code != 0 {
			t.Fatalf("whoami: exit %d stderr %q", r.Code, r.Stderr)
		}
		lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(r.Stdout, "\r", "")), "\n")
		want := []string{"user: alice", "groups: dev, qa", fmt.Sprintf("via: sso %s subject %s", w.idp.Issuer(), ssoAlice.Subject)}
		if len(lines) != 4 {
			t.Fatalf("got whoami %q, want 4 lines", r.Stdout)
		}
		for i, l := range want {
			if lines[i] != l {
				t.Errorf("whoami line %d: got %q, want %q", i+1, lines[i], l)
			}
		}
		m := regexp.MustCompile(`^expires: (\S+) \(in (\d+h)?(\d+)m\)$`).FindStringSubmatch(lines[3])
		if m == nil {
			t.Fatalf("whoami line 4: got %q, want expires: <RFC3339> (in ...)", lines[3])
		}
		exp, err := time.Parse(time.RFC3339, m[1])
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(exp); left <= 55*time.Minute || left > time.Hour {
			t.Errorf("binding expires in %s, want about session_ttl (1h)", left)
		}
		r = alice.ssh(t, nil, "bastion", "login")
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "logged in as alice until "+m[1]) {
			t.Errorf("login: got exit %d stdout %q, want logged in as alice until %s", r.Code, r.Stdout, m[1])
		}
		r = alice.ssh(t, nil, "bastion", "help")
		for _, cmd := range []string{"whoami", "login", "logout"} {
			if !strings.Contains(r.Stdout+r.Stderr, cmd) {
				t.Errorf("help: %q does not list %s", r.Stdout+r.Stderr, cmd)
			}
		}
	})

	bob := newSSOClient(t, w.b, "bob", "bob")
	t.Run("groups from the claim decide policy", func(t *testing.T) {
		r := alice.ssh(t, nil, jump("db-1", "echo db")...)
		if r.Code == 0 || strings.Contains(r.Stdout, "db") || !strings.Contains(r.Stderr, "db-1") {
			t.Errorf("alice (dev) to db-1: got exit %d stdout %q stderr %q, want refused naming db-1", r.Code, r.Stdout, r.Stderr)
		}
		var denial bool
		for _, ev := range auditEvents(t, w.b) {
			if str(ev, "type") == "policy_denied" && str(ev, "user") == "alice" && strings.HasPrefix(str(ev, "target"), "db-1") {
				denial = true
			}
		}
		if !denial {
			t.Error("no policy_denied event of alice to db-1")
		}
		// bob logs in without -J: the prompt is on his one connection.
		pr := w.login(t, bob, w.approve("bob"), "-l", w.me+"+db-1", "bastion", "echo db-for-ops")
		if pr.Code != 0 || !strings.Contains(pr.Tty, "db-for-ops") {
			t.Fatalf("bob (ops) to db-1: got exit %d terminal %q stderr %q", pr.Code, pr.Tty, pr.Stderr)
		}
		r = bob.ssh(t, nil, "bastion", "whoami")
		if !strings.Contains(r.Stdout, "user: bob") || !strings.Contains(r.Stdout, "groups: ops") {
			t.Errorf("bob's whoami: got %q", r.Stdout)
		}
	})

	t.Run("logout prompts again", func(t *testing.T) {
		r := alice.ssh(t, nil, "bastion", "logout")
		if want := fmt.Sprintf("logged out alice (key %s)", alice.fingerprint); r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
			t.Fatalf("logout: got exit %d stdout %q stderr %q, want %q", r.Code, r.Stdout, r.Stderr, want)
		}
		r = alice.ssh(t, nil, jump("web-1", "echo after-logout")...)
		if r.Code != 255 || !strings.Contains(r.Stderr, msgNotLoggedIn) || strings.Contains(r.Stdout, "after-logout") {
			t.Errorf("BatchMode after logout: got exit %d stdout %q stderr %q, want 255 and %q", r.Code, r.Stdout, r.Stderr, msgNotLoggedIn)
		}
		// Interactive, it prompts again: this time the person denies.
		pr := w.login(t, alice, w.idp.Deny, jump("web-1", "echo denied")...)
		if pr.Code != 255 || refusalLine(pr.Stderr) != msgDenied {
			t.Errorf("denied: got exit %d refusal %q, want 255 and %q (stderr %q)", pr.Code, refusalLine(pr.Stderr), msgDenied, pr.Stderr)
		}
	})

	t.Run("expired code", func(t *testing.T) {
		pr := w.login(t, alice, leaveAlone, jump("web-1", "echo expired")...)
		if pr.Code != 255 || refusalLine(pr.Stderr) != msgExpired {
			t.Errorf("got exit %d refusal %q, want 255 and %q (stderr %q)", pr.Code, refusalLine(pr.Stderr), msgExpired, pr.Stderr)
		}
	})

	for _, tc := range []struct {
		name string
		mode testidp.Mode
	}{
		{"wrong audience", testidp.WrongAudience},
		{"unknown key", testidp.UnknownKey},
		{"expired token", testidp.Expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.idp.SetMode(tc.mode)
			defer w.idp.SetMode(testidp.Normal)
			pr := w.login(t, alice, w.approve("alice"), jump("web-1", "echo hostile")...)
			line := refusalLine(pr.Stderr)
			if pr.Code != 255 || !strings.HasPrefix(line, msgBadToken) || !strings.HasSuffix(line, ")") || strings.Contains(pr.Tty, "hostile") {
				t.Errorf("got exit %d refusal %q, want 255 and %q<reason>) (stderr %q terminal %q)", pr.Code, line, msgBadToken, pr.Stderr, pr.Tty)
			}
		})
	}

	t.Run("IdP down", func(t *testing.T) {
		w.idp.SetDown(true)
		defer w.idp.SetDown(false)
		before := w.idp.Requests("/device_authorization")
		r := bob.ssh(t, nil, jump("db-1", "echo still-bound")...)
		if r.Code != 0 || r.Stdout != "still-bound\n" {
			t.Errorf("bound key while the IdP is down: got exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		p := startPTYSSH(t, alice.interactiveConfig, jump("web-1", "echo down")...)
		pr := p.wait(t, 30*time.Second)
		if pr.Code != 255 || refusalLine(pr.Stderr) != msgUnreachable {
			t.Errorf("new login while the IdP is down: got exit %d refusal %q, want 255 and %q (stderr %q)", pr.Code, refusalLine(pr.Stderr), msgUnreachable, pr.Stderr)
		}
		if promptRE.MatchString(pr.Stderr) {
			t.Errorf("a prompt was shown while the IdP was down: %q", pr.Stderr)
		}
		if w.idp.Requests("/device_authorization") == before {
			t.Error("the bastion did not try the IdP")
		}
	})

	for _, tc := range []struct {
		name, user, want string
	}{
		{"another email domain", "eve", "bastion: login refused: the email domain elsewhere.test is not allowed here"},
		{"unverified email", "mallory", "bastion: login refused: the identity's email address is not verified"},
		{"a configured user's name", "carol", "bastion: login refused: carol is a configured user's name; log in with that user's key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := w.login(t, alice, w.approve(tc.user), jump("web-1", "echo refused")...)
			if pr.Code != 255 || refusalLine(pr.Stderr) != tc.want || strings.Contains(pr.Tty, "refused") {
				t.Errorf("got exit %d refusal %q, want 255 and %q (stderr %q)", pr.Code, refusalLine(pr.Stderr), tc.want, pr.Stderr)
			}
		})
	}

	t.Run("login after the IdP is back", func(t *testing.T) {
		pr := w.login(t, alice, w.approve("alice"), jump("web-1", "echo back")...)
		if pr.Code != 0 || !strings.Contains(pr.Tty, "back") {
			t.Fatalf("got exit %d terminal %q stderr %q", pr.Code, pr.Tty, pr.Stderr)
		}
	})

	t.Run("audit", func(t *testing.T) {
		evs := auditEvents(t, w.b)
		var logins, logouts int
		denied := map[string]int{}
		for _, ev := range evs {
			switch str(ev, "type") {
			case "sso_login":
				logins++
				if str(ev, "issuer") != w.idp.Issuer() || str(ev, "subject") == "" || str(ev, "user") == "" || str(ev, "key_fingerprint") == "" || ev["expires"] == nil {
					t.Errorf("sso_login lacks a field of the contract: %v", ev)
				}
				if str(ev, "user") == "alice" && (str(ev, "subject") != ssoAlice.Subject || str(ev, "groups") != "dev,qa" || str(ev, "key_fingerprint") != alice.fingerprint) {
					t.Errorf("alice's sso_login: got %v", ev)
				}
			case "sso_denied":
				denied[str(ev, "reason")]++
				if str(ev, "reason") == "merge_refused" && (str(ev, "subject") != ssoCarol.Subject || str(ev, "user") != "carol") {
					t.Errorf("sso_denied merge_refused: got %v, want the known subject and user", ev)
				}
				if str(ev, "issuer") != w.idp.Issuer() || str(ev, "key_fingerprint") != alice.fingerprint {
					t.Errorf("sso_denied lacks issuer or key_fingerprint: %v", ev)
				}
			case "sso_logout":
				logouts++
				if str(ev, "subject") != ssoAlice.Subject || str(ev, "user") != "alice" || str(ev, "key_fingerprint") != alice.fingerprint {
					t.Errorf("sso_logout: got %v, want alice's subject, user and key", ev)
				}
			}
		}
		if logins != 3 {
			t.Errorf("got %d sso_login events, want 3 (alice twice, bob)", logins)
		}
		if logouts != 1 {
			t.Errorf("got %d sso_logout events, want 1", logouts)
		}
		for reason, n := range map[string]int{"denied": 1, "expired": 1, "invalid_token": 3, "unreachable": 1, "domain": 2, "merge_refused": 1} {
			if denied[reason] != n {
				t.Errorf("got %d sso_denied events with reason %s, want %d (all: %v)", denied[reason], reason, n, denied)
			}
		}
		// Every event of a connection authenticated by a binding carries
		// the subject: look at the events of bound sessions.
		var checked int
		for _, ev := range evs {
			switch str(ev, "type") {
			case "session_start", "policy_allowed", "policy_denied", "upstream_connected", "link_end", "session_end":
				if u := str(ev, "user"); u == "alice" || u == "bob" {
					checked++
					want := map[string]string{"alice": ssoAlice.Subject, "bob": ssoBob.Subject}[u]
					if str(ev, "subject") != want {
						t.Errorf("%s event of %s: subject %q, want %q: %v", str(ev, "type"), u, str(ev, "subject"), want, ev)
					}
				}
			}
		}
		if checked < 5 {
			t.Errorf("only %d later events of SSO users checked for subject", checked)
		}
	})

	t.Run("revoked_keys on reload", func(t *testing.T) {
		data, err := os.ReadFile(w.b.Config)
		if err != nil {
			t.Fatal(err)
		}
		n := countType(t, w.b, "config_reloaded")
		writeFile(t, w.b.Config, string(data)+fmt.Sprintf("revoked_keys: [%q]\n", bob.fingerprint), 0o600)
		w.b.signal(t, syscall.SIGHUP)
		waitFor(t, "the reload", 30*time.Second, func() bool { return countType(t, w.b, "config_reloaded") > n })
		r := bob.ssh(t, nil, jump("db-1", "echo revoked")...)
		if r.Code != 255 || strings.Contains(r.Stdout, "revoked") {
			t.Errorf("bob's bound but revoked key: got exit %d stdout %q stderr %q, want refused", r.Code, r.Stdout, r.Stderr)
		}
		if r := alice.ssh(t, nil, jump("web-1", "echo not-revoked")...); r.Code != 0 || r.Stdout != "not-revoked\n" {
			t.Errorf("alice's bound key after the reload: got exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})
}

// TestSSOSessionTTL: past session_ttl a bound key is no longer silent:
// BatchMode fails with the banner naming login, and an interactive
// connection prompts again. The ControlMaster connection the login made
// carries new links while the binding lives, and none after.
func TestSSOSessionTTL(t *testing.T) {
	w := newSSOWorld(t, testidp.Options{Users: []testidp.User{ssoAlice}, DeviceCodeTTL: ssoDeviceCodeTT, Interval: time.Second},
		"  session_ttl: 5s\n")
	alice := newSSOClient(t, w.b, "alice", "alice")
	sock := filepath.Join(t.TempDir(), "cm")
	// The login is a ControlMaster that stays up; muxed has new
	// connections go through it (the jump leg of -J reads the config too).
	master := startPTYSSH(t, alice.interactiveConfig, "-o", "ControlMaster=yes", "-o", "ControlPath="+sock, "-N", "bastion")
	if _, code := master.prompt(t); w.idp.Approve(code, "alice") != nil {
		t.Fatal("approving the master's login")
	}
	waitFor(t, "the master's control socket", 30*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	muxed := newClient(t, w.b, "alice", alice.Key, "Host bastion", "  ControlPath "+sock, "  ControlMaster no")
	via := func(word string) result {
		return muxed.ssh(t, nil, append(dest("jump", w.me, "web-1"), "echo "+word)...)
	}
	if r := via("muxed"); r.Code != 0 || r.Stdout != "muxed\n" {
		t.Fatalf("a link through the master within the TTL: got exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	var expires time.Time
	for _, ev := range auditEvents(t, w.b) {
		if str(ev, "type") == "sso_login" {
			var err error
			if expires, err = time.Parse(time.RFC3339Nano, str(ev, "expires")); err != nil {
				t.Fatalf("sso_login expires %q: %v", str(ev, "expires"), err)
			}
		}
	}
	if expires.IsZero() {
		t.Fatal("no sso_login event")
	}
	waitFor(t, "the binding to expire", 30*time.Second, func() bool { return time.Now().After(expires.Add(time.Second)) })

	t.Run("no new link through the old connection", func(t *testing.T) {
		r := via("too-late")
		if r.Code == 0 || strings.Contains(r.Stdout, "too-late") || !strings.Contains(r.Stderr, "bastion: web-1: your SSO login ended at ") {
			t.Errorf("a link through the master after the TTL: got exit %d stdout %q stderr %q, want refused, saying the SSO login ended", r.Code, r.Stdout, r.Stderr)
		}
	})
	t.Run("BatchMode names login", func(t *testing.T) {
		r := alice.ssh(t, nil, "bastion", "whoami")
		if r.Code != 255 || !strings.Contains(r.Stderr, msgNotLoggedIn) {
			t.Errorf("BatchMode after the TTL: got exit %d stdout %q stderr %q, want 255 and %q", r.Code, r.Stdout, r.Stderr, msgNotLoggedIn)
		}
	})
	t.Run("prompts again", func(t *testing.T) {
		if r := w.login(t, alice, w.approve("alice"), "bastion", "whoami"); r.Code != 0 || !strings.Contains(r.Tty, "user: alice") {
			t.Errorf("login again after the TTL: got exit %d terminal %q stderr %q", r.Code, r.Tty, r.Stderr)
		}
	})
}

// TestSSOFleet: with the fleet store, a login on replica a is honoured on
// replica b, and a logout on b is honoured on a; the bastion is a
// confidential client of the IdP.
func TestSSOFleet(t *testing.T) {
	// A confidential client here: the replicas read the secret from
	// client_secret_file.
	idp := testidp.Start(t, testidp.Options{Users: []testidp.User{ssoAlice}, DeviceCodeTTL: ssoDeviceCodeTT, Interval: time.Second, ClientSecret: "fleet-client-secret"})
	w := &ssoWorld{idp: idp, me: currentUser(t), dir: t.TempDir()}
	secret := filepath.Join(w.dir, "oidc-secret")
	writeFile(t, secret, "fleet-client-secret\n", 0o600)
	d := testkit.StartDynalite(t).URL
	env := []string{"AWS_ENDPOINT_URL_DYNAMODB=" + d, "AWS_ACCESS_KEY_ID=AKIDFLEET", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	common := ssoBody(t, idp, w.me, w.dir, fmt.Sprintf("  session_ttl: 1h\n  client_secret_file: %s\n", secret), "")
	body := func(replica string) string {
		return common + fmt.Sprintf("fleet: {dynamodb_table: bastion-sso-fleet, replica: %s, advertise: \"127.0.0.1:0\"}\n", replica)
	}
	cfg := filepath.Join(w.dir, "init.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\nhost_key: host_ed25519\nhost_ca_key: host_ca_ed25519\n"+body("init"), 0o600)
	cmd := exec.Command(bastionBin, "fleet", "init", "--config", cfg)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fleet init: %v\n%s", err, out)
	}
	adir, bdir := t.TempDir(), t.TempDir()
	a := startBastionIn(t, adir, body("a"), env...)
	for _, f := range []string{"host_ed25519", "host_ca_ed25519"} {
		data, err := os.ReadFile(filepath.Join(adir, f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(bdir, f), string(data), 0o600)
	}
	b := startBastionIn(t, bdir, body("b"), env...)

	key := newKey(t, t.TempDir(), "alice")
	onA := ssoClientFor(t, a, "alice", key)
	onB := ssoClientFor(t, b, "alice", key)
	w.b = a
	if pr := w.login(t, onA, w.approve("alice"), append(dest("jump", w.me, "web-1"), "echo on-a")...); pr.Code != 0 || !strings.Contains(pr.Tty, "on-a") {
		t.Fatalf("login on a: got exit %d terminal %q stderr %q", pr.Code, pr.Tty, pr.Stderr)
	}
	r := onB.ssh(t, nil, append(dest("jump", w.me, "web-1"), "echo on-b")...)
	if r.Code != 0 || r.Stdout != "on-b\n" {
		t.Fatalf("BatchMode on b after a login on a: got exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = onB.ssh(t, nil, "bastion", "whoami")
	if !strings.Contains(r.Stdout, "user: alice") || !strings.Contains(r.Stdout, "via: sso "+idp.Issuer()+" subject "+ssoAlice.Subject) {
		t.Errorf("whoami on b: got %q", r.Stdout)
	}
	if r = onB.ssh(t, nil, "bastion", "logout"); r.Code != 0 {
		t.Fatalf("logout on b: exit %d stderr %q", r.Code, r.Stderr)
	}
	r = onA.ssh(t, nil, "bastion", "whoami")
	if r.Code != 255 || !strings.Contains(r.Stderr, msgNotLoggedIn) {
		t.Errorf("BatchMode on a after a logout on b: got exit %d stdout %q stderr %q, want 255 and %q", r.Code, r.Stdout, r.Stderr, msgNotLoggedIn)
	}
}
