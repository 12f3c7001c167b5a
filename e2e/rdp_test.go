package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
	"bastion/internal/testkit"
	"bastion/upstream"
)

// The Remote Desktop proof (issue 17): xrdp, from Debian, is the Windows
// instance's RDP server; the AWS fake reports its TLS certificate as the
// instance's x509-cert host key; xfreerdp (freerdp2-x11), under Xvfb, is
// the person's RDP client, through `ssh -L` via the bastion.
//
// xrdp hands the login it receives to its session manager (sesman, at the
// address of /etc/xrdp/sesman.ini), which checks it with PAM for a system
// user. The test stands in for sesman there, and checks that the user name
// and password xfreerdp sent, inside the TLS session whose certificate
// xfreerdp pinned to the fingerprint `ssh bastion rdp` printed, are the
// ones `ssh bastion rdp` handed out. It does not start a desktop session
// (that would need a system user with that password).

// rdpPassword is the Administrator password the fake reports.
const rdpPassword = "S3cret-pw!2026"

// rdpCert is a TLS certificate and key for an RDP server, in PEM.
type rdpCert struct {
	der               []byte
	certPEM, keyPEM   string
	fingerprint       string
	fingerprintLowHex string
}

func newRDPCert(t *testing.T, cn string) rdpCert {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return rdpCert{
		der:               der,
		certPEM:           string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		keyPEM:            string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		fingerprint:       upstream.ColonHex(sum[:]),
		fingerprintLowHex: strings.ToLower(upstream.ColonHex(sum[:])),
	}
}

// xrdpServer is a running xrdp.
type xrdpServer struct {
	addr string
	proc *process
	log  string
}

var xrdpPortRE = regexp.MustCompile(`(?m)^port=.*$`)

// startXRDP runs xrdp in the foreground on 127.0.0.1:port with its own
// config, certificate and log in a fresh folder, and waits until it
// listens. xrdp cannot be handed a listener: if another process takes the
// port first, the test fails with xrdp's log.
func startXRDP(t *testing.T, port int, cert rdpCert) *xrdpServer {
	t.Helper()
	bin := testkit.Tool(t, "xrdp")
	dir := t.TempDir()
	base, err := os.ReadFile("/etc/xrdp/xrdp.ini")
	if err != nil {
		t.Fatalf("reading xrdp's default config (package xrdp): %v", err)
	}
	ini := string(base)
	set := func(key, value string) {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `=.*$`)
		if !re.MatchString(ini) {
			t.Fatalf("xrdp.ini has no %s= line", key)
		}
		ini = re.ReplaceAllLiteralString(ini, key+"="+value)
	}
	writeFile(t, filepath.Join(dir, "cert.pem"), cert.certPEM, 0o644)
	writeFile(t, filepath.Join(dir, "key.pem"), cert.keyPEM, 0o600)
	// The first port= line is [Globals]'; the sections' ports stay.
	loc := xrdpPortRE.FindStringIndex(ini)
	ini = ini[:loc[0]] + fmt.Sprintf("port=tcp://127.0.0.1:%d", port) + ini[loc[1]:]
	set("certificate", filepath.Join(dir, "cert.pem"))
	set("key_file", filepath.Join(dir, "key.pem"))
	set("security_layer", "negotiate")
	set("fork", "false")
	set("LogFile", filepath.Join(dir, "xrdp.log"))
	set("EnableSyslog", "false")
	cfg := filepath.Join(dir, "xrdp.ini")
	writeFile(t, cfg, ini, 0o644)
	s := &xrdpServer{addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "xrdp.log")}
	s.proc = startProcess(t, exec.Command(bin, "--nodaemon", "--config", cfg))
	waitFor(t, "xrdp to listen", 30*time.Second, func() bool {
		select {
		case <-s.proc.done:
			t.Fatalf("xrdp exited:\n%s\n%s", s.proc.out.String(), s.logText())
		default:
		}
		return strings.Contains(s.logText(), fmt.Sprintf("listening to port %d", port))
	})
	return s
}

func (s *xrdpServer) logText() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// startXvfb runs a virtual X server on a display it picks itself and
// returns the display name.
func startXvfb(t *testing.T) string {
	t.Helper()
	bin := testkit.Tool(t, "Xvfb")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(bin, "-displayfd", "3", "-nolisten", "tcp", "-screen", "0", "1024x768x24")
	cmd.ExtraFiles = []*os.File{w}
	startProcess(t, cmd)
	w.Close()
	r.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("Xvfb did not say its display: %v", err)
	}
	return ":" + strings.TrimSpace(line)
}

// sesmanAddr returns the address xrdp hands logins to, from
// /etc/xrdp/sesman.ini.
func sesmanAddr(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/etc/xrdp/sesman.ini")
	if err != nil {
		t.Fatalf("reading /etc/xrdp/sesman.ini (package xrdp): %v", err)
	}
	host, port := "127.0.0.1", "3350"
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ListenAddress="); ok {
			host = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ListenPort="); ok {
			port = v
		}
	}
	return net.JoinHostPort(host, port)
}

// fakeSesman listens where xrdp hands logins over and returns what the
// first connection sends (xrdp's SCP request carries the user name and
// password as length-prefixed strings).
func fakeSesman(t *testing.T) <-chan []byte {
	t.Helper()
	addr := sesmanAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("standing in for xrdp's sesman at %s (from /etc/xrdp/sesman.ini): %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var buf []byte
		b := make([]byte, 4096)
		for len(buf) < 4096 {
			n, err := c.Read(b)
			buf = append(buf, b[:n]...)
			if err != nil || (len(buf) >= 8 && len(buf) >= int(buf[4])<<24|int(buf[5])<<16|int(buf[6])<<8|int(buf[7])) {
				break
			}
		}
		got <- buf
	}()
	return got
}

// rdpWorld is the fixture: the fake with Windows instance win-1 (whose
// RDP server is xrdp) and Linux instance lin-1, and a bastion where dana
// may use rdp on them and erin may not.
type rdpWorld struct {
	fake        *awsfake.Server
	cert        rdpCert
	xrdp        *xrdpServer
	port        int
	bastion     *bastionProc
	dana, erin  *client
	display     string
	freerdpHome string
}

func newRDPWorld(t *testing.T) *rdpWorld {
	w := &rdpWorld{cert: newRDPCert(t, "EC2AMAZ-WIN1")}
	testkit.Tool(t, "xfreerdp")
	w.display = startXvfb(t)
	w.port = freePort(t)
	w.xrdp = startXRDP(t, w.port, w.cert)

	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	w.fake = fake
	fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "win-1", Region: region, PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1",
		Windows: &awsfake.LightsailWindows{Certificates: [][]byte{w.cert.der}, Password: rdpPassword}})
	fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "lin-1", Region: region, Username: "ec2-user", PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1"})

	// Instances created with a custom key pair: the bastion has the key
	// of "win-admins", not that of "lost".
	dir := t.TempDir()
	kp, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kpFile := filepath.Join(dir, "win-admins.pem")
	writeFile(t, kpFile, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(kp)})), 0o600)
	ct, err := awsfake.EncryptWindowsPassword(&kp.PublicKey, "Decrypted-pw-9")
	if err != nil {
		t.Fatal(err)
	}
	for name, win := range map[string]awsfake.LightsailWindows{
		"win-kp":   {Certificates: [][]byte{w.cert.der}, KeyPairName: "win-admins", PasswordCiphertext: ct},
		"win-lost": {Certificates: [][]byte{w.cert.der}, KeyPairName: "lost", PasswordCiphertext: ct},
		"win-new":  {Certificates: [][]byte{w.cert.der}},
	} {
		fake.AddLightsailInstance(awsfake.LightsailInstance{Name: name, Region: region, PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", Windows: &win})
	}

	dana, erin := newKey(t, dir, "dana"), newKey(t, dir, "erin")
	w.bastion = startBastion(t, fmt.Sprintf(`users:
  - {name: dana, keys: [%q], groups: [windows]}
  - {name: erin, keys: [%q], groups: [dev]}
providers:
  lightsail: {regions: [%s], rdp_port: %d, rdp_key_pairs: {win-admins: %s}}
policies:
  - {groups: [windows], targets: ["win-*", "lin-1"], os_users: [Administrator, ec2-user], allow: [rdp]}
  - {groups: [dev], targets: ["*"], os_users: ["*"], allow: [port_forwarding]}
limits: {aws_timeout: 10s, handshake_timeout: 20s}
admin_listen: 127.0.0.1:0
`, dana.AuthorizedKey(), erin.AuthorizedKey(), region, w.port, kpFile), awsEnv(fake, fake.SecretAccessKey())...)
	w.dana = newClient(t, w.bastion, "dana", dana)
	w.erin = newClient(t, w.bastion, "erin", erin)
	w.freerdpHome = t.TempDir()
	return w
}

// events returns the audit events of type typ.
func (w *rdpWorld) events(t *testing.T, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range w.bastion.AuditLines(t) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// localForward runs `ssh -N -L 127.0.0.1:PORT:target:3389 bastion` with
// ssh config sshConfig and returns the local port once ssh listens on it.
func localForward(t *testing.T, sshConfig, target string) int {
	t.Helper()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		p := startProcess(t, exec.Command("ssh", "-F", sshConfig, "-v", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
			"-L", fmt.Sprintf("127.0.0.1:%d:%s:3389", port, target), "bastion"))
		want := fmt.Sprintf("Local forwarding listening on 127.0.0.1 port %d", port)
		exited := false
		waitFor(t, "ssh -L to listen", 30*time.Second, func() bool {
			select {
			case <-p.done:
				exited = true
				return true
			default:
			}
			return strings.Contains(p.out.String(), want)
		})
		if !exited {
			return port
		}
		if attempt == 2 {
			t.Fatalf("ssh -L exited:\n%s", p.out.String())
		}
	}
}

// xfreerdp runs the RDP client against 127.0.0.1:port, authentication
// only, trusting exactly the certificate with fingerprint fp.
func (w *rdpWorld) xfreerdp(t *testing.T, port int, user, password, fp string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testkit.Tool(t, "xfreerdp"), fmt.Sprintf("/v:127.0.0.1:%d", port), "/u:"+user, "/p:"+password,
		"/cert:deny,fingerprint:sha256:"+fp, "+auth-only", "/log-level:INFO")
	cmd.Env = append(os.Environ(), "DISPLAY="+w.display, "HOME="+w.freerdpHome, "XDG_CONFIG_HOME="+filepath.Join(w.freerdpHome, ".config"))
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("xfreerdp timed out:\n%s", out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

var (
	rdpPasswordRE = regexp.MustCompile(`(?m)^  password:  (.+)$`)
	rdpFPRE       = regexp.MustCompile(`(?m)^    ([0-9A-F]{2}(?::[0-9A-F]{2}){31})$`)
	rdpUserRE     = regexp.MustCompile(`(?m)^  user:      (.+)$`)
)

// TestRDP is the Remote Desktop proof, in order: the credentials, a login
// end to end through the bastion with them, a person without rdp refused,
// a Linux instance refused, and a swapped certificate refused before any
// byte reaches the person.
func TestRDP(t *testing.T) {
	w := newRDPWorld(t)
	var user, password, fp string

	t.Run("credentials", func(t *testing.T) {
		r := w.dana.ssh(t, nil, "bastion", "rdp", "win-1")
		if r.Code != 0 {
			t.Fatalf("ssh bastion rdp win-1: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
		}
		for _, want := range []string{"ssh -N -L 13389:win-1:3389", "full address:s:localhost:13389", "username:s:Administrator"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.Stdout)
			}
		}
		m, f, u := rdpPasswordRE.FindStringSubmatch(r.Stdout), rdpFPRE.FindStringSubmatch(r.Stdout), rdpUserRE.FindStringSubmatch(r.Stdout)
		if m == nil || f == nil || u == nil {
			t.Fatalf("no user, password or fingerprint in:\n%s", r.Stdout)
		}
		user, password, fp = u[1], m[1], f[1]
		if user != "Administrator" || password != rdpPassword || fp != w.cert.fingerprint {
			t.Errorf("got %s / %s / %s, want Administrator / %s / %s (xrdp's certificate)", user, password, fp, rdpPassword, w.cert.fingerprint)
		}
		file := w.dana.ssh(t, nil, "bastion", "rdp", "--rdp-file", "win-1")
		if file.Code != 0 || !strings.HasPrefix(file.Stdout, "full address:s:localhost:13389\n") || strings.Contains(file.Stdout, rdpPassword) {
			t.Errorf("--rdp-file: exit %d, got\n%s\nwant only a .rdp file, without the password", file.Code, file.Stdout)
		}
		issued := w.events(t, "rdp_credentials_issued")
		if len(issued) != 2 || issued[0]["user"] != "dana" || issued[0]["status"] != "issued" || issued[0]["host_key_fingerprint"] != w.cert.fingerprint ||
			issued[0]["os_user"] != "Administrator" || issued[1]["status"] != "rdp_file" {
			t.Errorf("rdp_credentials_issued events: got %v, want two for dana as Administrator with the certificate's fingerprint, status issued then rdp_file", issued)
		}
		for _, line := range w.bastion.AuditLines(t) {
			if strings.Contains(line, rdpPassword) {
				t.Errorf("the password is in the audit log: %s", line)
			}
		}
		if strings.Contains(w.bastion.proc.out.String(), rdpPassword) {
			t.Error("the password is in the bastion's log")
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("login through the bastion", func(t *testing.T) {
		sesman := fakeSesman(t)
		port := localForward(t, w.dana.ConfigPath, "win-1")
		out, code := w.xfreerdp(t, port, user, password, fp)
		if code != 0 || !strings.Contains(out, "Authentication only, exit status 0") {
			t.Fatalf("xfreerdp through the bastion: exit %d\n%s", code, out)
		}
		var login []byte
		select {
		case login = <-sesman:
		case <-time.After(60 * time.Second):
			t.Fatalf("xrdp handed no login to sesman; xrdp log:\n%s", w.xrdp.logText())
		}
		if !strings.Contains(string(login), "Administrator") || !strings.Contains(string(login), rdpPassword) {
			t.Errorf("xrdp received the login %q, want Administrator with the password `ssh bastion rdp` printed", login)
		}
		if !strings.Contains(w.xrdp.logText(), "TLS connection established") {
			t.Errorf("xrdp logged no TLS connection:\n%s", w.xrdp.logText())
		}
		verified := w.events(t, "rdp_certificate_verified")
		opened := w.events(t, "forward_open")
		if len(verified) == 0 || verified[0]["host_key_fingerprint"] != w.cert.fingerprint || len(opened) == 0 || opened[0]["kind"] != "rdp" {
			t.Errorf("got rdp_certificate_verified %v, forward_open %v; want the certificate verified, then a forward of kind rdp", verified, opened)
		}
		waitFor(t, "forward_close", 30*time.Second, func() bool { return len(w.events(t, "forward_close")) > 0 })
		// xrdp and xfreerdp negotiate TLS 1.3, whose certificate the
		// bastion cannot see in passing: xfreerdp's pin checked it.
		if c := w.events(t, "forward_close")[0]; c["bytes_up"] == nil || c["bytes_down"] == nil || c["status"] != "certificate_unseen" {
			t.Errorf("forward_close %v: want bytes both ways and status certificate_unseen", c)
		}
	})

	t.Run("passwords", func(t *testing.T) {
		for _, tc := range []struct{ instance, want string }{
			{"win-kp", "  password:  Decrypted-pw-9\n"},
			{"win-lost", "  password:  encrypted to key pair lost, whose private key the bastion does not have (providers.lightsail.rdp_key_pairs)\n"},
			{"win-new", "  password:  not ready yet (Lightsail takes up to 15 minutes after an instance is created)\n"},
		} {
			r := w.dana.ssh(t, nil, "bastion", "rdp", tc.instance)
			if !strings.Contains(r.Stdout, tc.want) || (r.Code == 0) != (tc.instance == "win-kp") {
				t.Errorf("ssh bastion rdp %s: exit %d, got\n%s\nwant %q", tc.instance, r.Code, r.Stdout, tc.want)
			}
		}
		for _, line := range w.bastion.AuditLines(t) {
			if strings.Contains(line, "Decrypted-pw-9") {
				t.Errorf("the password is in the audit log: %s", line)
			}
		}
	})

	t.Run("person without rdp", func(t *testing.T) {
		r := w.erin.ssh(t, []byte{}, "-W", "win-1:3389", "bastion")
		const want = "no policy lets erin use rdp on win-1"
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, want) {
			t.Errorf("ssh -W win-1:3389 as erin: exit %d, stdout %q, stderr %q; want refused with %q", r.Code, r.Stdout, r.Stderr, want)
		}
		r = w.erin.ssh(t, nil, "bastion", "rdp", "win-1")
		if r.Code == 0 || strings.Contains(r.Stdout, rdpPassword) || !strings.Contains(r.Stderr, want) {
			t.Errorf("ssh bastion rdp win-1 as erin: exit %d, stdout %q, stderr %q; want refused with %q", r.Code, r.Stdout, r.Stderr, want)
		}
		denied := 0
		for _, e := range w.events(t, "policy_denied") {
			if e["user"] == "erin" && e["capability"] == "rdp" {
				denied++
			}
		}
		if denied != 2 {
			t.Errorf("got %d policy_denied events for erin's rdp, want 2", denied)
		}
	})

	t.Run("linux instance", func(t *testing.T) {
		r := w.dana.ssh(t, nil, "bastion", "rdp", "lin-1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "bastion: lin-1: Lightsail has no Remote Desktop for this instance (not a Windows instance)") {
			t.Errorf("ssh bastion rdp lin-1: exit %d, stderr %q; want Lightsail's refusal", r.Code, r.Stderr)
		}
	})

	t.Run("swapped certificate", func(t *testing.T) {
		other := newRDPCert(t, "EC2AMAZ-WIN1")
		w.xrdp.proc.Stop()
		w.xrdp = startXRDP(t, w.port, other)
		before := strings.Count(w.xrdp.logText(), "connection received")
		// The person's client starts its own negotiation; nothing of
		// the instance may come back.
		cr := []byte{3, 0, 0, 19, 14, 0xE0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0}
		r := w.dana.ssh(t, cr, "-W", "win-1:3389", "bastion")
		want := "bastion: win-1: the instance's RDP certificate (SHA256 " + other.fingerprint + ") is not the one Lightsail reported; refusing the forward"
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, want) {
			t.Errorf("ssh -W win-1:3389 with xrdp's certificate swapped: exit %d, stdout %q, stderr %q; want no byte and %q", r.Code, r.Stdout, r.Stderr, want)
		}
		refused := w.events(t, "rdp_certificate_refused")
		if len(refused) != 1 || refused[0]["host_key_fingerprint"] != other.fingerprint {
			t.Errorf("rdp_certificate_refused events: got %v, want one with the swapped certificate's fingerprint", refused)
		}
		// Only the bastion's own probe reached xrdp: the person's
		// bytes were never sent.
		if got := strings.Count(w.xrdp.logText(), "connection received") - before; got != 1 {
			t.Errorf("xrdp received %d connections, want 1 (the bastion's probe)\n%s", got, w.xrdp.logText())
		}
		if n := len(w.events(t, "forward_open")); n != 1 {
			t.Errorf("got %d forward_open events, want only the earlier login's", n)
		}
	})
}

// TestRDPDemo tries the demo's Windows instance as its output says: it is
// listed, `ssh bastion rdp win-1` hands out its login, and through the
// forward its stand-in RDP endpoint completes the negotiation and the TLS
// handshake with the certificate whose fingerprint was printed.
func TestRDPDemo(t *testing.T) {
	dir := t.TempDir()
	d := startDemo(t, dir, nil)
	sshConfig := filepath.Join(d.state, "ssh_config")
	if !strings.Contains(d.p.out.String(), "stand-in") || !strings.Contains(d.p.out.String(), "bastion rdp win-1") {
		t.Errorf("the demo's output does not tell of win-1's RDP stand-in:\n%s", d.p.out.String())
	}
	out, err := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "bastion", "list").CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^win-1\s+lightsail\s`).Match(out) {
		t.Fatalf("ssh bastion list: %v\n%s\nwant win-1 listed", err, out)
	}
	out, err = exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "bastion", "rdp", "win-1").Output()
	pw, fp := rdpPasswordRE.FindSubmatch(out), rdpFPRE.FindSubmatch(out)
	if err != nil || pw == nil || fp == nil || strings.Contains(string(pw[1]), "not ready") {
		t.Fatalf("ssh bastion rdp win-1: %v\n%s\nwant a password and a fingerprint", err, out)
	}
	port := localForward(t, sshConfig, "win-1")
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte{3, 0, 0, 19, 14, 0xE0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	cc := make([]byte, 19)
	if _, err := io.ReadFull(c, cc); err != nil || cc[5] != 0xD0 || cc[11] != 0x02 || cc[15] != 0x01 {
		t.Fatalf("connection confirm: got % x, %v; want one selecting PROTOCOL_SSL", cc, err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with the stand-in through the bastion: %v", err)
	}
	sum := sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
	if got := upstream.ColonHex(sum[:]); got != string(fp[1]) {
		t.Errorf("the stand-in presented %s, want %s (printed by ssh bastion rdp)", got, fp[1])
	}
}
