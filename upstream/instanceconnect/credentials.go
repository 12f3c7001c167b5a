package instanceconnect

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// Credentials makes a fresh ed25519 key in memory, pushes its public half
// to t for osUser with SendSSHPublicKey and returns it with the instance's
// address. The key works for KeyLifetime from now: dial at once. Nothing is
// cached but the instance's description (for its address and zone).
func (p *Provider) Credentials(ctx context.Context, t upstream.Target, osUser string) (*upstream.Credentials, error) {
	if t.Provider != upstream.ProviderEC2 {
		return nil, fmt.Errorf("instanceconnect: target %s belongs to provider %q", t, t.Provider)
	}
	c, ok := p.clients[t.Region]
	if !ok {
		return nil, &upstream.Error{
			Public: "EC2 region " + t.Region + " is not configured",
			Err:    fmt.Errorf("getting credentials for %s: region %q not configured", t, t.Region),
		}
	}
	if !IsInstanceID(t.ID) {
		return nil, fmt.Errorf("instanceconnect: target %s has no instance id", t)
	}
	insts, err := p.lookup(ctx, t.Region, t.ID, true)
	if err != nil {
		return nil, err
	}
	if len(insts) == 0 {
		return nil, &upstream.Error{
			Public: "this EC2 instance no longer exists",
			Err:    fmt.Errorf("getting credentials for %s: %w", t, upstream.ErrNotFound),
		}
	}
	in := insts[0]
	if in.state != string(types.InstanceStateNameRunning) {
		return nil, &upstream.Error{
			Public: "this EC2 instance is " + in.state + ", not running",
			Err:    fmt.Errorf("getting credentials for %s: instance state %s", t, in.state),
		}
	}
	host := in.privateIP
	if p.cfg.Address == AddressPublic {
		host = in.publicIP
	}
	if host == "" {
		return nil, &upstream.Error{
			Public: "this EC2 instance has no " + p.cfg.Address + " IP address",
			Err:    fmt.Errorf("getting credentials for %s: no %s ip address", t, p.cfg.Address),
		}
	}

	hostKeyCallback, hostKeyAlgs, hostKeySource := p.hostKeys.Callback(in.id), p.hostKeys.HostKeyAlgorithms(in.id), p.hostKeySource
	if p.cfg.HostKeys == HostKeysConsole {
		// Before the key is pushed: an instance whose host key cannot
		// be verified gets no key.
		hostKeyCallback, hostKeyAlgs, hostKeySource, err = p.consoleHostKeys(ctx, c, t.Region, in.id)
		if err != nil {
			return nil, err
		}
	}

	signer, pub, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("generating key for %s: %w", t, err)
	}

	// The key's lifetime starts when AWS accepts it, after this instant.
	expires := p.cfg.Now().Add(KeyLifetime)
	zone := in.zone
	if zone == "" {
		zone = t.Zone
	}
	call := awsutil.Call{
		Service:   awsutil.ServiceInstanceConnect,
		Operation: "SendSSHPublicKey",
		Timeout:   p.cfg.CallTimeout,
		Logger:    p.log,
		Observe:   p.cfg.Observe,
		Fields: []zap.Field{
			zap.String("instance", in.id), zap.String("region", t.Region),
			zap.String("os_user", osUser), zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())),
		},
	}
	out, reqID, err := awsutil.Do(ctx, call, func(ctx context.Context) (*ec2instanceconnect.SendSSHPublicKeyOutput, middleware.Metadata, error) {
		input := &ec2instanceconnect.SendSSHPublicKeyInput{
			InstanceId:     aws.String(in.id),
			InstanceOSUser: aws.String(osUser),
			SSHPublicKey:   aws.String(pub),
		}
		if zone != "" {
			input.AvailabilityZone = aws.String(zone)
		}
		out, err := c.Connect.SendSSHPublicKey(ctx, input)
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	if err != nil {
		return nil, err
	}
	if id := aws.ToString(out.RequestId); id != "" {
		reqID = id
	}
	if !out.Success {
		return nil, &upstream.Error{
			Public:    "EC2 Instance Connect SendSSHPublicKey did not succeed",
			RequestID: reqID,
			Err:       fmt.Errorf("pushing key to %s: success=false", t),
		}
	}
	return &upstream.Credentials{
		Addr:              net.JoinHostPort(host, strconv.Itoa(p.cfg.Port)),
		User:              osUser,
		Signer:            signer,
		HostKeyCallback:   hostKeyCallback,
		HostKeyAlgorithms: hostKeyAlgs,
		HostKeySource:     hostKeySource,
		Expires:           expires,
		RequestID:         reqID,
	}, nil
}

// NewKey makes the one-use ed25519 key pushed to an instance (or its
// serial console): the signer, and the public key in authorized_keys form
// as SendSSHPublicKey wants it. The private key never leaves memory.
func NewKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}
