package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
	"bastion/internal/testkit"
)

// awsRegion is the fake account's one region.
const awsRegion = "us-east-1"

// Target names as the client types them. The ".static" and ".lightsail"
// suffixes keep each lookup to one provider: a bare "target" would also be
// looked up in Lightsail, adding the fake's latency to the cached case.
const (
	targetStatic     = "target.static"   // the real sshd, static provider (cached)
	targetLightsail  = "lsweb.lightsail" // the same sshd, Lightsail provider (uncached)
	targetLight      = "light.static"    // the in-process idle server
	lightsailName    = "lsweb"
	benchUser        = "bench"          // the person's name on the bastion
	readyTimeout     = 30 * time.Second // for a daemon to be ready
	quiesceTimeout   = 15 * time.Second // for sshd to reap a connection
	readyLineSSHD    = `Server listening on 127\.0\.0\.1 port (\d+)`
	readyLineBastion = `bastion: listening on (\S+)`
	// adminLineBastion says where the admin server listens (admin_listen
	// is port 0: the bastion binds a port the kernel picks).
	adminLineBastion = `bastion: admin on http://(\S+)`
)

// keypair is an ed25519 key on disk in OpenSSH format.
type keypair = testkit.Key

func authorizedKey(k ssh.PublicKey) string { return testkit.AuthorizedKey(k) }

// newKey creates an ed25519 key in dir.
func newKey(dir, name string) (keypair, error) { return testkit.WriteKey(dir, name) }

// sshd is a running OpenSSH server.
type sshd struct {
	*daemon
	Addr    string
	Port    int
	HostKey ssh.PublicKey
}

// startSSHD runs `sshd -D -e` on 127.0.0.1 with its own folder, host key
// and config (the test kit's launcher, which retries when another process
// takes its port first), logging to its folder's sshd.log.
func startSSHD(ctx context.Context, ds *daemons, bin, dir, name string, authorizedKeys []string, extra []string) (*sshd, error) {
	dir = filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "sshd.log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s, err := testkit.LaunchSSHD(ctx, testkit.SSHDConfig{
		Dir: dir, Bin: bin, AuthorizedKeys: authorizedKeys,
		// Thousands of connections may be in their handshake at once.
		Extra:        append([]string{"MaxStartups 100000"}, extra...),
		LogLevel:     "INFO",
		Log:          f,
		SysProcAttr:  &syscall.SysProcAttr{Setpgid: true},
		ReadyTimeout: readyTimeout,
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		<-s.Proc.Done()
		f.Close()
	}()
	d := ds.adopt(name, s.Proc, logPath)
	return &sshd{daemon: d, Addr: s.Addr, Port: s.Port, HostKey: s.HostKey.Signer.PublicKey()}, nil
}

// bastionProc is a running `bastion serve`.
type bastionProc struct {
	*daemon
	Addr      string
	AdminAddr string
	Config    string
	HostKey   ssh.PublicKey
	HostCA    ssh.PublicKey
}

// bastionConfig is what goes into the bastion's config file.
type bastionConfig struct {
	Dir          string
	AdminAddr    string
	PersonKey    string // authorized_keys line of the person
	UpstreamKey  string // private key file the bastion logs in to targets with
	OSUser       string
	Upstream     *sshd  // target.static and the Lightsail instance
	LightAddr    string // light.static
	LightHostKey ssh.PublicKey
	Record       string // --record: "", "plain" or "age"
}

// render returns the YAML config: the static provider for the cached
// case, Lightsail (against the fake, resolve cache off) for the uncached
// one.
func (c bastionConfig) render() string {
	q := strconv.Quote
	return fmt.Sprintf(`# Written by bench/run.
listen: 127.0.0.1:0
admin_listen: %s
host_key: %s
host_ca_key: %s
users:
  - {name: %s, keys: [%s]}
providers:
  lightsail: {regions: [%s], port: %d, resolve_cache: 0s}
  static:
    - {name: target, address: %s, user: %s, private_key: %s, host_key: %s}
    - {name: light, address: %s, user: %s, private_key: %s, host_key: %s}
policies:
  - {users: [%s], targets: ["*"], os_users: ["*"], allow: [port_forwarding]}
audit: {log: %s%s}
`,
		q(c.AdminAddr), q(filepath.Join(c.Dir, "host_ed25519")), q(filepath.Join(c.Dir, "host_ca_ed25519")),
		benchUser, q(c.PersonKey),
		awsRegion, c.Upstream.Port,
		q(c.Upstream.Addr), c.OSUser, q(c.UpstreamKey), q(authorizedKey(c.Upstream.HostKey)),
		q(c.LightAddr), c.OSUser, q(c.UpstreamKey), q(authorizedKey(c.LightHostKey)),
		benchUser, q(filepath.Join(c.Dir, "audit.jsonl")), c.recordingAudit())
}

// startBastion checks the config with `bastion check-config`, runs
// `bastion serve` and waits for its "listening on" line.
func startBastion(ctx context.Context, ds *daemons, bin string, c bastionConfig, env []string) (*bastionProc, error) {
	dir := filepath.Join(c.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(c.render()), 0o600); err != nil {
		return nil, err
	}
	if out, err := runTool(ctx, bin, "check-config", "--config", cfgPath); err != nil {
		return nil, fmt.Errorf("the generated bastion config is refused:\n%s", out)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	d, err := ds.start("bastion", cmd, newLogPath(dir, "bastion"))
	if err != nil {
		return nil, err
	}
	m, err := waitLine(ctx, d, regexp.MustCompile(readyLineBastion), readyTimeout)
	if err != nil {
		return nil, err
	}
	b := &bastionProc{daemon: d, Addr: m[1], AdminAddr: c.AdminAddr, Config: cfgPath}
	if a, err := waitLine(ctx, d, regexp.MustCompile(adminLineBastion), readyTimeout); err == nil {
		b.AdminAddr = a[1]
	} else {
		return nil, err
	}
	if b.HostKey, err = publicKeyOf(filepath.Join(dir, "host_ed25519")); err != nil {
		return nil, err
	}
	if b.HostCA, err = publicKeyOf(filepath.Join(dir, "host_ca_ed25519")); err != nil {
		return nil, err
	}
	return b, nil
}

// newLogPath returns dir/name.log, or dir/name-2.log and so on if that
// exists: a restarted daemon's readiness line must come from its own log.
func newLogPath(dir, name string) string {
	p := filepath.Join(dir, name+".log")
	for i := 2; ; i++ {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, i))
	}
}

// publicKeyOf reads the public half of the private key at privPath.
func publicKeyOf(privPath string) (ssh.PublicKey, error) { return testkit.PublicKeyOf(privPath) }

// awsEnv points the bastion's AWS SDK at the fake, and nowhere else.
func awsEnv(fake *awsfake.Server) []string {
	return []string{
		"AWS_ENDPOINT_URL_LIGHTSAIL=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT=" + fake.URL(),
		"AWS_ACCESS_KEY_ID=" + fake.AccessKeyID(),
		"AWS_SECRET_ACCESS_KEY=" + fake.SecretAccessKey(),
		"AWS_REGION=" + awsRegion,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

// clientConfig is the OpenSSH client's setup: an ssh_config naming the
// jump sshd "jump", the bastion "bastion" and the upstream sshd
// "upstream", one identity, and a known_hosts that pins the three keys and
// trusts the bastion's host CA for every target name. StrictHostKeyChecking
// is yes everywhere.
type clientConfig struct {
	Path string
}

func writeClientConfig(dir string, key keypair, me string, jump, upstream *sshd, b *bastionProc, ciphers string) (clientConfig, error) {
	bhost, bport, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return clientConfig{}, err
	}
	kh := filepath.Join(dir, "known_hosts")
	lines := []string{
		fmt.Sprintf("[127.0.0.1]:%d %s", jump.Port, authorizedKey(jump.HostKey)),
		fmt.Sprintf("[127.0.0.1]:%d %s", upstream.Port, authorizedKey(upstream.HostKey)),
		fmt.Sprintf("[%s]:%s %s", bhost, bport, authorizedKey(b.HostKey)),
		"@cert-authority *.static,*.lightsail " + authorizedKey(b.HostCA),
	}
	if err := os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return clientConfig{}, err
	}
	cfg := []string{
		"Host jump",
		"  HostName 127.0.0.1",
		"  Port " + strconv.Itoa(jump.Port),
		"  User " + me,
		"Host upstream",
		"  HostName 127.0.0.1",
		"  Port " + strconv.Itoa(upstream.Port),
		"  User " + me,
		"Host bastion",
		"  HostName " + bhost,
		"  Port " + bport,
		"  User " + benchUser,
		"Host *",
		"  IdentityFile " + key.Private,
		"  IdentitiesOnly yes",
		"  IdentityAgent none",
		"  UserKnownHostsFile " + kh,
		"  GlobalKnownHostsFile /dev/null",
		"  StrictHostKeyChecking yes",
		"  UpdateHostKeys no",
		"  BatchMode yes",
		"  ConnectTimeout 10",
		"  ServerAliveInterval 0",
		"  ControlMaster no",
		"  ControlPath none",
		"  LogLevel ERROR",
	}
	if ciphers != "" {
		cfg = append(cfg, "  Ciphers "+ciphers)
	}
	p := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(p, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return clientConfig{}, err
	}
	return clientConfig{Path: p}, nil
}
