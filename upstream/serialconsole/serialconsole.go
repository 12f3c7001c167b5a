// Package serialconsole is the upstream.Provider for the EC2 serial console:
// the break-glass console of an instance whose network or sshd is broken,
// typed as "web-1.serial", "i-0123456789abcdef0.serial" or
// "web-1.us-east-1.serial" and logged in to as the serial port, port0.
//
// Instances are found as the EC2 provider finds them (package
// instanceconnect). For each connection the provider makes a fresh ed25519
// key in memory and pushes its public half with
// SendSerialConsoleSSHPublicKey (serial port 0); AWS accepts it for 60
// seconds at the region's serial console endpoint, where the bastion logs
// in as "<instance-id>.port0". The endpoint's host key is checked against
// the SHA256 fingerprints AWS publishes for the region (or the config's),
// never learned on first use.
package serialconsole

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/config"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/instanceconnect"
	"bastion/upstream/provider"
)

// Port is the OS user a person types for the serial console: the serial
// port, of which AWS offers one.
const Port = provider.SerialPort

// DefaultEndpoint is the endpoint of a region AWS publishes none for, with
// "{region}" standing for the region.
const DefaultEndpoint = "serial-console.ec2-instance-connect.{region}.aws:22"

// KeyLifetime is how long the serial console service keeps a pushed key.
const KeyLifetime = 60 * time.Second

// Values of Credentials.HostKeySource.
const (
	// SourcePublished is a fingerprint from AWS's published table.
	SourcePublished = "aws_published"
	// SourceConfig is a fingerprint from providers.ec2.serial_console.
	SourceConfig = "config"
)

// API is the subset of the EC2 Instance Connect client the provider uses.
type API interface {
	SendSerialConsoleSSHPublicKey(ctx context.Context, in *ec2instanceconnect.SendSerialConsoleSSHPublicKeyInput, optFns ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSerialConsoleSSHPublicKeyOutput, error)
}

// Instances finds EC2 instances: the EC2 provider (*instanceconnect.Provider)
// implements it.
type Instances interface {
	Resolve(ctx context.Context, q upstream.Query) ([]upstream.Target, error)
	List(ctx context.Context) ([]upstream.Target, error)
}

// Config configures a Provider.
type Config struct {
	// Endpoint is the serial console service's host:port, with "{region}"
	// replaced by the instance's region. If empty, each region's published
	// endpoint (DefaultEndpoint for a region without one).
	Endpoint string
	// HostKeys maps a region to the SHA256 fingerprints its endpoint may
	// present, replacing the published one of that region.
	HostKeys map[string][]string
	// Dial opens the TCP connection to an endpoint; if nil, a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CallTimeout bounds each AWS call including its retries; if zero,
	// awsutil.DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives one line per AWS call; if nil, nothing is logged.
	Logger *zap.Logger
	// Observe, if non-nil, is told of every AWS call (for metrics).
	Observe awsutil.Observer
	// Now returns the current time; if nil, time.Now.
	Now func() time.Time
}

// Provider reaches the serial consoles of EC2 instances. It is safe for
// concurrent use.
type Provider struct {
	cfg       Config
	instances Instances
	clients   map[string]API
	log       *zap.Logger
}

// New returns a Provider that finds instances with instances and pushes
// keys with clients[region].
func New(instances Instances, clients map[string]API, cfg Config) (*Provider, error) {
	if instances == nil {
		return nil, errors.New("serialconsole: no instance finder")
	}
	if len(clients) == 0 {
		return nil, errors.New("serialconsole: no regions")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Provider{cfg: cfg, instances: instances, clients: clients, log: log}, nil
}

// Name returns upstream.ProviderSerial.
func (p *Provider) Name() string { return upstream.ProviderSerial }

// Resolve finds the EC2 instances q names, as serial console targets. It
// answers only queries with the .serial suffix: "web-1" alone is the
// instance's SSH, never its console.
func (p *Provider) Resolve(ctx context.Context, q upstream.Query) ([]upstream.Target, error) {
	if q.Provider != upstream.ProviderSerial {
		return nil, nil
	}
	q.Provider = upstream.ProviderEC2
	ts, err := p.instances.Resolve(ctx, q)
	return asSerial(ts), err
}

// List returns every running EC2 instance as a serial console target.
func (p *Provider) List(ctx context.Context) ([]upstream.Target, error) {
	ts, err := p.instances.List(ctx)
	return asSerial(ts), err
}

// asSerial returns ts as targets of the serial provider.
func asSerial(ts []upstream.Target) []upstream.Target {
	out := make([]upstream.Target, 0, len(ts))
	for _, t := range ts {
		if t.Provider != upstream.ProviderEC2 {
			continue
		}
		t.Provider = upstream.ProviderSerial
		out = append(out, t)
	}
	return out
}

// Endpoint returns the serial console endpoint of region, host:port.
func (p *Provider) Endpoint(region string) string {
	tmpl := p.cfg.Endpoint
	if tmpl == "" {
		if e, ok := published[region]; ok {
			return net.JoinHostPort(e.host, "22")
		}
		tmpl = DefaultEndpoint
	}
	return strings.ReplaceAll(tmpl, config.RegionPlaceholder, region)
}

// Fingerprints returns the SHA256 host key fingerprints the endpoint of
// region may present, and where they come from (SourceConfig or
// SourcePublished); none if neither the config nor AWS's table has the
// region.
func (p *Provider) Fingerprints(region string) ([]string, string) {
	if fps, ok := p.cfg.HostKeys[region]; ok {
		return fps, SourceConfig
	}
	if e, ok := published[region]; ok {
		return []string{e.fingerprint}, SourcePublished
	}
	return nil, ""
}

// Credentials pushes a fresh key for t's serial port 0 with
// SendSerialConsoleSSHPublicKey and returns it with the region's endpoint,
// the user "<instance-id>.port0" and a host key check against the region's
// fingerprints. osUser must be Port. The key works for KeyLifetime: dial
// at once.
func (p *Provider) Credentials(ctx context.Context, t upstream.Target, osUser string) (*upstream.Credentials, error) {
	if t.Provider != upstream.ProviderSerial {
		return nil, fmt.Errorf("serialconsole: target %s belongs to provider %q", t, t.Provider)
	}
	if osUser != Port {
		return nil, &upstream.Error{
			Public: "a serial console is logged in to as its port, " + Port + ", the only one AWS offers: ssh -J bastion " + Port + "@" + t.Name + ".serial",
			Err:    fmt.Errorf("getting serial console credentials for %s: user %q is not %s", t, audit.Clip(osUser), Port),
		}
	}
	c, ok := p.clients[t.Region]
	if !ok {
		return nil, &upstream.Error{
			Public: "EC2 region " + t.Region + " is not configured",
			Err:    fmt.Errorf("getting serial console credentials for %s: region %q not configured", t, t.Region),
		}
	}
	if !upstream.IsInstanceID(t.ID) {
		return nil, fmt.Errorf("serialconsole: target %s has no instance id", t)
	}
	fps, source := p.Fingerprints(t.Region)
	if len(fps) == 0 {
		// Before the key is pushed: a console whose endpoint cannot be
		// verified is not opened (and does not take the one session).
		return nil, &upstream.Error{
			Public: "no host key fingerprint is known for the serial console endpoint of " + t.Region + " (set providers.ec2.serial_console.host_keys)",
			Err:    fmt.Errorf("getting serial console credentials for %s: no fingerprint for region %s", t, t.Region),
		}
	}
	addr := p.Endpoint(t.Region)

	signer, pub, err := instanceconnect.NewKey()
	if err != nil {
		return nil, fmt.Errorf("generating key for %s: %w", t, err)
	}
	expires := p.cfg.Now().Add(KeyLifetime)
	call := awsutil.Call{
		Service:   awsutil.ServiceInstanceConnect,
		Operation: "SendSerialConsoleSSHPublicKey",
		Timeout:   p.cfg.CallTimeout,
		Logger:    p.log,
		Observe:   p.cfg.Observe,
		Fields: []zap.Field{
			zap.String("instance", t.ID), zap.String("region", t.Region),
			zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())),
		},
	}
	out, reqID, err := awsutil.Do(ctx, call, func(ctx context.Context) (*ec2instanceconnect.SendSerialConsoleSSHPublicKeyOutput, middleware.Metadata, error) {
		out, err := c.SendSerialConsoleSSHPublicKey(ctx, &ec2instanceconnect.SendSerialConsoleSSHPublicKeyInput{
			InstanceId:   aws.String(t.ID),
			SerialPort:   0,
			SSHPublicKey: aws.String(pub),
		})
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	if err != nil {
		return nil, publicError(err)
	}
	if id := aws.ToString(out.RequestId); id != "" {
		reqID = id
	}
	if !out.Success {
		return nil, &upstream.Error{
			Public:    "EC2 Instance Connect SendSerialConsoleSSHPublicKey did not succeed",
			RequestID: reqID,
			Err:       fmt.Errorf("pushing serial console key to %s: success=false", t),
		}
	}
	dial := p.cfg.Dial
	return &upstream.Credentials{
		Addr:            addr,
		Dial:            func(ctx context.Context) (net.Conn, error) { return dial(ctx, "tcp", addr) },
		User:            t.ID + "." + Port,
		Signer:          signer,
		HostKeyCallback: fingerprintCallback(t, addr, fps, source),
		HostKeySource:   source,
		Expires:         expires,
		RequestID:       reqID,
	}, nil
}

// fingerprintCallback accepts a host key whose SHA256 fingerprint is one of
// fps, and refuses any other with a sentence naming where fps come from.
func fingerprintCallback(t upstream.Target, addr string, fps []string, source string) ssh.HostKeyCallback {
	from := "the fingerprints AWS publishes for " + t.Region
	if source == SourceConfig {
		from = "providers.ec2.serial_console.host_keys." + t.Region
	}
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if slices.Contains(fps, ssh.FingerprintSHA256(key)) {
			return nil
		}
		return &upstream.Error{
			Public: "the serial console endpoint " + addr + " presented host key " + ssh.FingerprintSHA256(key) + ", which is not in " + from + "; refusing to connect",
			Err:    &upstream.HostKeyMismatchError{Target: t.ID, Got: key},
		}
	}
}

// Interface guards.
var (
	_ upstream.Provider = (*Provider)(nil)
	_ upstream.Lister   = (*Provider)(nil)
)
