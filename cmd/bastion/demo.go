package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/config"
	"bastion/internal/awsfake"
	"bastion/internal/siminstance"
	"bastion/proxy"
)

// demoRegion is the simulated account's one region.
const demoRegion = "us-east-1"

// demoInstance is one simulated instance: an in-process SSH server on its
// own loopback address, registered with the fake as Lightsail or EC2, with
// the OS users such an instance has (sessions run as the person running
// the demo, whichever of them logs in).
type demoInstance struct {
	name, provider, id string
	users              []string
}

// demoInstances are an Amazon Linux and an Ubuntu Lightsail instance (one
// default user each, as GetInstanceAccessDetails reports) and an Amazon
// Linux EC2 instance.
var demoInstances = []demoInstance{
	{name: "web-1", provider: "lightsail", users: []string{"ec2-user"}},
	{name: "web-2", provider: "lightsail", users: []string{"ubuntu"}},
	{name: "api-1", provider: "ec2", id: "i-0a1b2c3d4e5f60718", users: []string{"ec2-user"}},
}

// demoListeners returns n listeners on distinct random loopback addresses
// (127.x.y.z) sharing one port, as a provider's instances share port 22 in
// AWS. Random addresses and a port the kernel picks let a second demo, or
// a test beside one, start without colliding.
func demoListeners(n int) ([]net.Listener, error) {
	var err error
	for range 20 {
		var ls []net.Listener
		port, seen := "0", map[string]bool{}
		for len(ls) < n {
			ip := fmt.Sprintf("127.%d.%d.%d", 1+mrand.IntN(254), mrand.IntN(256), 1+mrand.IntN(254))
			if seen[ip] {
				continue
			}
			seen[ip] = true
			var l net.Listener
			if l, err = net.Listen("tcp", net.JoinHostPort(ip, port)); err != nil {
				break
			}
			_, port, _ = net.SplitHostPort(l.Addr().String())
			ls = append(ls, l)
		}
		if len(ls) == n {
			return ls, nil
		}
		for _, l := range ls {
			l.Close()
		}
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, fmt.Errorf("listening on loopback addresses other than 127.0.0.1 (Linux has all of 127.0.0.0/8; macOS needs `sudo ifconfig lo0 alias ADDRESS`): %w", err)
		}
	}
	return nil, fmt.Errorf("listening for the simulated instances: %w", err)
}

// cmdDemo runs a bastion in front of a simulated AWS account: the AWS fake
// with Lightsail and EC2 instances that are in-process SSH servers (a real
// shell, as the person running the demo), and a bastion that reaches them
// with credentials from the fake. It writes a key, a config and an ssh
// config into --state and prints ready-to-paste ssh lines.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stdout)
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
	ports := map[string]string{}
	for _, provider := range []string{"lightsail", "ec2"} {
		var mine []demoInstance
		for _, d := range demoInstances {
			if d.provider == provider {
				mine = append(mine, d)
			}
		}
		ls, err := demoListeners(len(mine))
		if err != nil {
			return err
		}
		for i, d := range mine {
			ip, port, _ := net.SplitHostPort(ls[i].Addr().String())
			ports[provider] = port
			auth := siminstance.TrustCA(fake.LightsailCA())
			if d.provider == "ec2" {
				id := d.id
				auth = siminstance.AcceptKeys(func(user string) []ssh.PublicKey { return fake.PushedKeys(id, user) })
			}
			inst, err := siminstance.Start(siminstance.Options{Listener: ls[i], Authorize: auth, Name: d.name, Users: d.users, Logger: log.Named(d.name)})
			if err != nil {
				for _, l := range ls[i+1:] {
					l.Close()
				}
				return fmt.Errorf("starting simulated instance %s: %w", d.name, err)
			}
			defer inst.Close()
			if d.provider == "lightsail" {
				fake.AddLightsailInstance(awsfake.LightsailInstance{Name: d.name, Region: demoRegion, Username: d.users[0],
					PublicIP: ip, PrivateIP: ip, HostKeys: []ssh.PublicKey{inst.HostKey()}, Tags: map[string]string{"env": "demo"}})
			} else {
				fake.AddEC2Instance(awsfake.EC2Instance{ID: d.id, Region: demoRegion, AvailabilityZone: demoRegion + "a",
					PrivateIP: ip, PublicIP: ip, Tags: map[string]string{"Name": d.name, "env": "demo"}})
			}
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
`, *listen, demoRegion, ports["lightsail"], demoRegion, ports["ec2"])
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
	b, err := assemble.New(ctx, cfg, assemble.Options{Logger: log, AWS: &awsCfg})
	if err != nil {
		return err
	}
	defer b.Close()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (choose another with --listen): %w", cfg.Listen, err)
	}
	sshConfig, knownHosts, err := writeDemoSSHConfig(dir, l.Addr().(*net.TCPAddr), keyPath, b.Server.HostKey.PublicKey(), b.Server.HostCA.PublicKey())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `bastion demo: a bastion on %s in front of a simulated AWS account
  (fake AWS API at %s; the instances are in-process SSH servers:
  whichever OS user you log in as, sessions run your shell as %s)

Try:
  ssh -F %[4]s -J bastion ec2-user@web-1        # Lightsail, Amazon Linux (temporary key + certificate)
  ssh -F %[4]s -J bastion ec2-user@api-1.ec2    # EC2 (key pushed with Instance Connect)
  ssh -F %[4]s -l ubuntu+web-2 bastion          # Lightsail, Ubuntu; direct mode, for clients without ProxyJump
  scp -F %[4]s -J bastion %[5]s ec2-user@web-1:/tmp/
  ssh -F %[4]s -t bastion                       # pick a target from the list
  ssh -F %[4]s bastion list                     # the targets you may reach, as text

known_hosts lines that trust the bastion and its host CA for its targets (in %[6]s):
%[7]sAudit log: %[8]s    Recordings: %[10]s    Logs: %[9]s
Metrics: the admin address printed below (/metrics, /healthz, /readyz)
Ctrl-C stops the demo.
`, l.Addr(), fake.URL(), me.Username, sshConfig, cfgPath, filepath.Join(dir, "known_hosts"), indent(knownHosts, "  "),
		filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "bastion.log"), filepath.Join(dir, "recordings"))
	stopWatch := watchParent(ctx, stop)
	defer stopWatch()
	err = serve(ctx, b, l, cfgPath, cfg.WatchConfig, cfg.Limits.DrainTimeout.D(), log)
	if errors.Is(err, proxy.ErrServerClosed) {
		return nil
	}
	return err
}

// writeDemoSSHConfig writes an ssh config naming the demo bastion
// "bastion", and a known_hosts that trusts its key and host CA, so the
// printed lines work with StrictHostKeyChecking=yes. It returns the
// config's path and the known_hosts text.
func writeDemoSSHConfig(dir string, addr *net.TCPAddr, keyPath string, hostKey, ca ssh.PublicKey) (string, string, error) {
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
	known := knownHostsLines(addr.IP.String(), strconv.Itoa(addr.Port), hostKey, ca, names)
	if err := os.WriteFile(kh, []byte(known), 0o644); err != nil {
		return "", "", err
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
	return path, known, os.WriteFile(path, []byte(text), 0o644)
}

// indent prefixes every line of text with prefix.
func indent(text, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if line != "" {
			b.WriteString(prefix + line)
		}
	}
	return b.String()
}

// watchParent calls stop once the demo's parent process is gone (the demo
// is then re-parented, and Getppid changes), checking every 200ms until
// ctx is done. `go run ./cmd/bastion demo` runs the demo as a child of the
// go command; killing that by its pid would otherwise leave the demo
// orphaned, holding its ports. The returned function ends the watch.
func watchParent(ctx context.Context, stop func()) func() {
	parent := os.Getppid()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					fmt.Fprintln(os.Stderr, "bastion demo: the process that started the demo has gone; stopping")
					stop()
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
