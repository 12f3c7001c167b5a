package instanceconnect

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// Host key modes of the console kind, beside the tofu store's.
const (
	// HostKeysConsole reads each instance's host keys from the block
	// cloud-init prints on its console (ec2:GetConsoleOutput) and pins
	// them before the first connection.
	HostKeysConsole = "console"
	// FallbackRefuse (the default) refuses an instance whose console has
	// no host key block; FallbackTOFU trusts its first key instead, in
	// the known_hosts store.
	FallbackRefuse = "refuse"
	FallbackTOFU   = "tofu"
)

// ConsoleAPI is the part of the EC2 client that host_keys: console uses.
type ConsoleAPI interface {
	GetConsoleOutput(ctx context.Context, in *ec2.GetConsoleOutputInput, optFns ...func(*ec2.Options)) (*ec2.GetConsoleOutputOutput, error)
}

// The markers of the block cloud-init's cc_keys_to_console module prints.
const (
	consoleKeysBegin = "-----BEGIN SSH HOST KEY KEYS-----"
	consoleKeysEnd   = "-----END SSH HOST KEY KEYS-----"
)

// Bounds on what an instance's console can make the bastion hold.
const (
	// maxConsoleOutput is the most console output decoded; EC2 returns
	// at most 64 KiB.
	maxConsoleOutput = 1 << 20
	// maxConsoleKeys is the most host keys taken from one block.
	maxConsoleKeys = 16
	// consoleKeysTTL is how long keys read from a console are reused.
	consoleKeysTTL = 10 * time.Minute
	// maxConsoleEntries bounds the cache of keys read from consoles.
	maxConsoleEntries = 4096
)

// ParseConsoleHostKeys returns the host keys of the last complete block of
// SSH host keys in console output (an instance prints one per boot; the
// last is the current one). Lines that are not public keys are skipped; at
// most maxConsoleKeys are returned. No block, or an empty one, is nil.
func ParseConsoleHostKeys(out []byte) []ssh.PublicKey {
	end := bytes.LastIndex(out, []byte(consoleKeysEnd))
	if end < 0 {
		return nil
	}
	begin := bytes.LastIndex(out[:end], []byte(consoleKeysBegin))
	if begin < 0 {
		return nil
	}
	var keys []ssh.PublicKey
	for _, line := range bytes.Split(out[begin+len(consoleKeysBegin):end], []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			continue
		}
		if _, ok := k.(*ssh.Certificate); ok {
			continue
		}
		keys = append(keys, k)
		if len(keys) == maxConsoleKeys {
			break
		}
	}
	return keys
}

// consoleCache holds the host keys read from instances' consoles.
type consoleCache struct {
	mu   sync.Mutex
	byID map[string]consoleEntry
}

type consoleEntry struct {
	keys    []ssh.PublicKey
	expires time.Time
}

func (c *consoleCache) get(id string, now time.Time) ([]ssh.PublicKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok || now.After(e.expires) {
		return nil, false
	}
	return e.keys, true
}

func (c *consoleCache) put(id string, keys []ssh.PublicKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[string]consoleEntry{}
	}
	if len(c.byID) >= maxConsoleEntries {
		for k, e := range c.byID {
			if now.After(e.expires) {
				delete(c.byID, k)
			}
		}
		if len(c.byID) >= maxConsoleEntries {
			clear(c.byID)
		}
	}
	c.byID[id] = consoleEntry{keys: keys, expires: now.Add(consoleKeysTTL)}
}

// consoleHostKeys returns how to check instance id's host key in console
// mode: against the keys its console printed, or, when it printed none and
// the fallback is tofu, against the known_hosts store. It reads the console
// (GetConsoleOutput) at most once per consoleKeysTTL per instance.
func (p *Provider) consoleHostKeys(ctx context.Context, c Clients, region, id string) (cb ssh.HostKeyCallback, algs []string, source string, err error) {
	now := p.cfg.Now()
	keys, ok := p.console.get(id, now)
	if !ok {
		if c.Console == nil {
			return nil, nil, "", fmt.Errorf("instanceconnect: host_keys console: no EC2 client for GetConsoleOutput in %s", region)
		}
		call := awsutil.Call{
			Service: awsutil.ServiceEC2, Operation: "GetConsoleOutput",
			Timeout: p.cfg.CallTimeout, Logger: p.log, Observe: p.cfg.Observe,
			Fields: []zap.Field{zap.String("instance", id), zap.String("region", region)},
		}
		out, _, err := awsutil.Do(ctx, call, func(ctx context.Context) (*ec2.GetConsoleOutputOutput, middleware.Metadata, error) {
			out, err := c.Console.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id), Latest: aws.Bool(true)})
			if err != nil {
				return nil, middleware.Metadata{}, err
			}
			return out, out.ResultMetadata, nil
		})
		if err != nil {
			return nil, nil, "", err
		}
		enc := aws.ToString(out.Output)
		if len(enc) > base64.StdEncoding.EncodedLen(maxConsoleOutput) {
			enc = enc[len(enc)-base64.StdEncoding.EncodedLen(maxConsoleOutput):]
			enc = enc[len(enc)%4:]
		}
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, nil, "", &upstream.Error{
				Public: "the console output of this EC2 instance could not be read",
				Err:    fmt.Errorf("decoding the console output of %s: %w", id, err),
			}
		}
		keys = ParseConsoleHostKeys(raw)
		p.console.put(id, keys, now)
	}
	if len(keys) == 0 {
		if p.cfg.HostKeysFallback == FallbackTOFU {
			return p.hostKeys.Callback(id), p.hostKeys.HostKeyAlgorithms(id), "console_fallback_tofu", nil
		}
		return nil, nil, "", &upstream.Error{
			Public: "this EC2 instance printed no SSH host keys on its console (cloud-init), so its host key cannot be verified; refusing (host_keys_fallback: refuse)",
			Err:    fmt.Errorf("host keys of %s: no SSH host key block in its console output", id),
		}
	}
	return pinnedCallback(keys), keyAlgorithms(keys), HostKeysConsole, nil
}

// pinnedCallback accepts exactly one of keys.
func pinnedCallback(keys []ssh.PublicKey) ssh.HostKeyCallback {
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		return &upstream.Error{
			Public: "the host key does not match the one this EC2 instance printed on its console",
			Err:    &upstream.HostKeyMismatchError{Target: host, Got: key, Want: keys},
		}
	}
}

// keyAlgorithms returns the host key algorithms to offer for keys, so
// that the instance presents one of them.
func keyAlgorithms(keys []ssh.PublicKey) []string {
	var algs []string
	for _, k := range keys {
		switch t := k.Type(); t {
		case ssh.KeyAlgoRSA:
			algs = append(algs, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			algs = append(algs, t)
		}
	}
	return algs
}
