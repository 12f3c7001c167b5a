package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"golang.org/x/crypto/ssh"

	"bastion/config"
	"bastion/internal/awsfake"
	"bastion/internal/siminstance"
	"bastion/proxy"
)

// demoRegion is the simulated account's one region.
const demoRegion = "us-east-1"

// demoInstance is one simulated instance: an in-process SSH server on its
// own loopback address, registered with the fake as Lightsail or EC2.
type demoInstance struct {
	name, provider, id, ip string
}

// demoInstances are spread over loopback addresses so that each provider
// reaches all of its instances on one port, as in AWS.
var demoInstances = []demoInstance{
	{name: "web-1", provider: "lightsail", ip: "127.0.0.11"},
	{name: "web-2", provider: "lightsail", ip: "127.0.0.12"},
	{name: "api-1", provider: "ec2", id: "i-0a1b2c3d4e5f60718", ip: "127.0.0.21"},
}

const demoInstancePort = "2022"

// cmdDemo runs a bastion in front of a simulated AWS account: the AWS fake
// with Lightsail and EC2 instances that are in-process SSH servers (a real
// shell, as the person running the demo), and a bastion that reaches them
// with credentials from the fake. It writes a key, a config and an ssh
// config into --state and prints ready-to-paste ssh lines.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	state := fs.String("state", "demo-state", "folder for the demo's keys, config and audit log")
	listen := fs.String("listen", "127.0.0.1:2222", "address the demo bastion listens on")
	devLog := fs.Bool("dev-log", false, "human-readable logs instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "bastion.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(*devLog, logFile)
	defer log.Sync()
	me, err := user.Current()
	if err != nil {
		return err
	}

	fake, err := awsfake.Start(awsfake.Options{Logger: log.Named("awsfake"), RSAKeyPool: 2})
	if err != nil {
		return fmt.Errorf("starting the AWS fake: %w", err)
	}
	defer fake.Close()
	for _, d := range demoInstances {
		auth := siminstance.TrustCA(fake.LightsailCA())
		if d.provider == "ec2" {
			id := d.id
			auth = siminstance.AcceptKeys(func(user string) []ssh.PublicKey { return fake.PushedKeys(id, user) })
		}
		inst, err := siminstance.Start(siminstance.Options{Addr: net.JoinHostPort(d.ip, demoInstancePort), Authorize: auth, Name: d.name, Logger: log.Named(d.name)})
		if err != nil {
			return fmt.Errorf("starting simulated instance %s on %s (the demo needs the loopback range 127.0.0.0/8, as Linux has): %w", d.name, d.ip, err)
		}
		defer inst.Close()
		if d.provider == "lightsail" {
			fake.AddLightsailInstance(awsfake.LightsailInstance{Name: d.name, Region: demoRegion, Username: me.Username,
				PublicIP: d.ip, PrivateIP: d.ip, HostKeys: []ssh.PublicKey{inst.HostKey()}, Tags: map[string]string{"env": "demo"}})
		} else {
			fake.AddEC2Instance(awsfake.EC2Instance{ID: d.id, Region: demoRegion, AvailabilityZone: demoRegion + "a",
				PrivateIP: d.ip, PublicIP: d.ip, Tags: map[string]string{"Name": d.name, "env": "demo"}})
		}
	}

	keyPath := filepath.Join(dir, "id_ed25519")
	key, _, err := proxy.LoadOrCreateKey(keyPath)
	if err != nil {
		return fmt.Errorf("demo key: %w", err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey())))
	if err := os.WriteFile(keyPath+".pub", []byte(pub+" bastion-demo\n"), 0o644); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`# Written by "bastion demo": the bastion in front of the simulated account.
listen: %q
host_key: host_ed25519
host_ca_key: host_ca_ed25519
users:
  - {name: demo, keys_file: id_ed25519.pub, groups: [dev]}
providers:
  lightsail: {regions: [%s], port: %s}
  ec2: {regions: [%s], port: %s, host_keys: tofu, known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"], allow: [port_forwarding, agent_forwarding]}
audit:
  log: audit.jsonl
  recordings: recordings
admin_listen: 127.0.0.1:0
limits: {drain_timeout: 5s}
`, *listen, demoRegion, demoInstancePort, demoRegion, demoInstancePort)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo config:\n%w", err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(demoRegion),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(fake.AccessKeyID(), fake.SecretAccessKey(), "")),
		awsconfig.WithBaseEndpoint(fake.URL()),
		// The person's own AWS profile has no say in the demo.
		awsconfig.WithSharedConfigFiles([]string{}),
		awsconfig.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		return fmt.Errorf("demo AWS config: %w", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBastion(ctx, cfg, log, &awsCfg)
	if err != nil {
		return err
	}
	defer b.close()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (choose another with --listen): %w", cfg.Listen, err)
	}
	sshConfig, err := writeDemoSSHConfig(dir, l.Addr().(*net.TCPAddr), keyPath, b.srv.HostKey.PublicKey(), b.srv.HostCA.PublicKey())
	if err != nil {
		return err
	}
	rel := sshConfig
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, sshConfig); err == nil && !strings.HasPrefix(r, "..") {
			rel = r
		}
	}
	fmt.Fprintf(stdout, `bastion demo: a bastion on %s in front of a simulated AWS account
  (fake AWS API at %s; instances are in-process SSH servers running your shell as %s)

Try:
  ssh -F %[4]s -J bastion %[3]s@web-1               # Lightsail instance (temporary key + certificate)
  ssh -F %[4]s -J bastion %[3]s@api-1.ec2           # EC2 instance (key pushed with Instance Connect)
  ssh -F %[4]s -l %[3]s+web-2 bastion               # direct mode, for clients without ProxyJump
  scp -F %[4]s -J bastion README.md %[3]s@web-1:/tmp/
  ssh -F %[4]s -t bastion                           # pick a target from the list
  ssh -F %[4]s bastion list                         # the targets you may reach, as text

known_hosts line that trusts the bastion's host CA for its targets (already in %[9]s):
  @cert-authority *.lightsail,*.ec2,web-1,web-2,api-1,%[10]s %[5]s
Audit log: %[6]s    Recordings: %[8]s    Logs: %[7]s
Metrics: the admin address printed below (/metrics, /healthz, /readyz)
Ctrl-C stops the demo.
`, l.Addr(), fake.URL(), me.Username, rel, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(b.srv.HostCA.PublicKey()))),
		filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "bastion.log"), filepath.Join(dir, "recordings"),
		filepath.Join(dir, "known_hosts"), demoInstances[2].id)
	err = b.serve(ctx, l, cfgPath)
	if errors.Is(err, proxy.ErrServerClosed) {
		return nil
	}
	return err
}

// writeDemoSSHConfig writes an ssh config naming the demo bastion
// "bastion", and a known_hosts that trusts its key and host CA, so the
// printed lines work with StrictHostKeyChecking=yes.
func writeDemoSSHConfig(dir string, addr *net.TCPAddr, keyPath string, hostKey, ca ssh.PublicKey) (string, error) {
	kh := filepath.Join(dir, "known_hosts")
	// The same trust `bastion ssh-config` hands out: the host CA for the
	// provider suffixes and the demo's target names, nothing else.
	names := []string{"*.lightsail", "*.ec2"}
	for _, d := range demoInstances {
		names = append(names, d.name)
		if d.id != "" {
			names = append(names, d.id)
		}
	}
	if err := os.WriteFile(kh, []byte(knownHostsLines(addr.IP.String(), strconv.Itoa(addr.Port), hostKey, ca, names)), 0o644); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ssh_config")
	text := fmt.Sprintf(`# Written by "bastion demo".
Host bastion
  HostName %s
  Port %d
  User demo
Host *
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
`, addr.IP, addr.Port, keyPath, kh)
	return path, os.WriteFile(path, []byte(text), 0o644)
}
