// Package demo is the simulated AWS account of `bastion demo`: the AWS fake
// with Lightsail and EC2 instances that are in-process SSH servers (a real
// shell, as the person running the demo), and the bastion config, key and
// AWS SDK config that reach them.
package demo

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
	"bastion/internal/siminstance"
	"bastion/proxy"
)

// Region is the simulated account's one region.
const Region = "us-east-1"

// Instance is one simulated instance: an in-process SSH server on its own
// loopback address, registered with the fake as Lightsail or EC2, with the
// OS users such an instance has (sessions run as the person running the
// demo, whichever of them logs in).
type Instance struct {
	Name, Provider, ID string
	Users              []string
}

// Instances are an Amazon Linux and an Ubuntu Lightsail instance (one
// default user each, as GetInstanceAccessDetails reports) and an Amazon
// Linux EC2 instance.
var Instances = []Instance{
	{Name: "web-1", Provider: "lightsail", Users: []string{"ec2-user"}},
	{Name: "web-2", Provider: "lightsail", Users: []string{"ubuntu"}},
	{Name: "api-1", Provider: "ec2", ID: "i-0a1b2c3d4e5f60718", Users: []string{"ec2-user"}},
}

// Account is a running simulated account.
type Account struct {
	// Fake is the AWS API the providers call.
	Fake *awsfake.Server
	// AWS is the SDK config that reaches Fake, with its credentials and
	// none of the person's own profile.
	AWS aws.Config
	// ports is the SSH port of each provider's instances.
	ports     map[string]string
	instances []*siminstance.Instance
	// rdp is the RDP stand-in of the Windows instance (rdp.go).
	rdp *rdpStandIn
}

// Start starts the AWS fake and the instances of Instances, logging to
// log. Close stops them.
func Start(ctx context.Context, log *zap.Logger) (_ *Account, err error) {
	fake, err := awsfake.Start(awsfake.Options{Logger: log.Named("awsfake"), RSAKeyPool: 2})
	if err != nil {
		return nil, fmt.Errorf("starting the AWS fake: %w", err)
	}
	a := &Account{Fake: fake, ports: map[string]string{}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	for _, provider := range []string{"lightsail", "ec2"} {
		if err := a.startInstances(provider, log); err != nil {
			return nil, err
		}
	}
	if err := a.startWindows(log); err != nil {
		return nil, err
	}
	a.AWS, err = awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(Region),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(fake.AccessKeyID(), fake.SecretAccessKey(), "")),
		awsconfig.WithBaseEndpoint(fake.URL()),
		// The person's own AWS profile has no say in the demo.
		awsconfig.WithSharedConfigFiles([]string{}),
		awsconfig.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		return nil, fmt.Errorf("demo AWS config: %w", err)
	}
	return a, nil
}

// startInstances starts provider's instances on one port and registers
// them with the fake.
func (a *Account) startInstances(provider string, log *zap.Logger) error {
	var mine []Instance
	for _, d := range Instances {
		if d.Provider == provider {
			mine = append(mine, d)
		}
	}
	ls, err := listeners(len(mine))
	if err != nil {
		return err
	}
	for i, d := range mine {
		ip, port, _ := net.SplitHostPort(ls[i].Addr().String())
		a.ports[provider] = port
		auth := siminstance.TrustCA(a.Fake.LightsailCA())
		if d.Provider == "ec2" {
			id := d.ID
			auth = siminstance.AcceptKeys(func(user string) []ssh.PublicKey { return a.Fake.PushedKeys(id, user) })
		}
		inst, err := siminstance.Start(siminstance.Options{Listener: ls[i], Authorize: auth, Name: d.Name, Users: d.Users, Logger: log.Named(d.Name)})
		if err != nil {
			for _, l := range ls[i+1:] {
				l.Close()
			}
			return fmt.Errorf("starting simulated instance %s: %w", d.Name, err)
		}
		a.instances = append(a.instances, inst)
		if d.Provider == "lightsail" {
			a.Fake.AddLightsailInstance(awsfake.LightsailInstance{Name: d.Name, Region: Region, Username: d.Users[0],
				PublicIP: ip, PrivateIP: ip, HostKeys: []ssh.PublicKey{inst.HostKey()}, Tags: map[string]string{"env": "demo"}})
		} else {
			// Its console shows its host key, as cloud-init prints it
			// at boot: the bastion reads it there (host_keys: console).
			a.Fake.AddEC2Instance(awsfake.EC2Instance{ID: d.ID, Region: Region, AvailabilityZone: Region + "a",
				PrivateIP: ip, PublicIP: ip, Tags: map[string]string{"Name": d.Name, "env": "demo"},
				ConsoleOutput: consoleOutput(d.Name, inst.HostKey())})
		}
	}
	return nil
}

// consoleOutput is the boot console of a simulated EC2 instance: the
// block of SSH host keys cloud-init prints, amid other output.
func consoleOutput(name string, hostKey ssh.PublicKey) string {
	return "[    0.000000] Linux version 6.1 (simulated)\n" +
		"-----BEGIN SSH HOST KEY KEYS-----\n" +
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey))) + " root@" + name + "\n" +
		"-----END SSH HOST KEY KEYS-----\n" +
		name + " login: "
}

// Close stops the instances and the fake.
func (a *Account) Close() {
	for _, inst := range a.instances {
		inst.Close()
	}
	if a.rdp != nil {
		a.rdp.Close()
	}
	a.Fake.Close()
}

// WriteState writes into dir the person's key (id_ed25519, created once)
// and a bastion config listening on listen that reaches the account, and
// returns the paths of the key and the config.
func (a *Account) WriteState(dir, listen string) (keyPath, cfgPath string, err error) {
	keyPath = filepath.Join(dir, "id_ed25519")
	key, _, err := proxy.LoadOrCreateKey(keyPath)
	if err != nil {
		return "", "", fmt.Errorf("demo key: %w", err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey())))
	if err := os.WriteFile(keyPath+".pub", []byte(pub+" bastion-demo\n"), 0o644); err != nil {
		return "", "", err
	}
	cfgPath = filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`# Written by "bastion demo": the bastion in front of the simulated account.
listen: %q
host_key: host_ed25519
host_ca_key: host_ca_ed25519
users:
  - {name: demo, keys_file: id_ed25519.pub, groups: [dev]}
providers:
  lightsail: {regions: [%s], port: %s, rdp_port: %s}
  ec2: {regions: [%s], port: %s, host_keys: console, known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"], allow: [port_forwarding, agent_forwarding, rdp]}
audit:
  log: audit.jsonl
  recordings: recordings
admin_listen: 127.0.0.1:0
limits: {drain_timeout: 5s}
`, listen, Region, a.ports["lightsail"], a.ports["rdp"], Region, a.ports["ec2"])
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return "", "", err
	}
	return keyPath, cfgPath, nil
}

// TargetNames are the names the demo's targets answer to, besides the
// provider suffixes: what its known_hosts trusts the host CA for.
func TargetNames() []string {
	var names []string
	for _, d := range Instances {
		names = append(names, d.Name)
		if d.ID != "" {
			names = append(names, d.ID)
		}
	}
	return names
}

// listeners returns n listeners on distinct random loopback addresses
// (127.x.y.z) sharing one port, as a provider's instances share port 22 in
// AWS. Random addresses and a port the kernel picks let a second demo, or
// a test beside one, start without colliding.
func listeners(n int) ([]net.Listener, error) {
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
