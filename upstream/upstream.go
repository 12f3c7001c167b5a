// Package upstream finds the instance a person asked for and obtains the
// short-lived credentials the bastion uses to log in to it.
//
// A Provider is one source of instances (Lightsail, EC2, a static list). The
// proxy parses what the person typed into a Query, asks a Resolver (which fans
// out to every configured Provider) for the one matching Target, and then asks
// that Target's Provider for Credentials. This package does not import the
// AWS SDK: the AWS providers' sub-packages and the code that builds them
// (upstream/build, assemble) do, and so does the recording uploader
// (audit/recording).
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/upstream/provider"
)

// Provider names, as used in target names ("web-1.lightsail") and policies
// ("lightsail:web-*"). Package provider owns them and what they mean.
const (
	ProviderLightsail = provider.NameLightsail
	ProviderEC2       = provider.NameEC2
	ProviderStatic    = provider.NameStatic
	ProviderSerial    = provider.NameSerial
)

// Query is a parsed target name: what the person typed as the host.
type Query struct {
	// Name is the instance name, EC2 Name tag, static name or instance id.
	Name string
	// Provider restricts the lookup to one provider; empty means all.
	Provider string
	// Region restricts the lookup to one region; empty means all configured.
	Region string
}

// String returns the query as it would be typed.
func (q Query) String() string {
	s := q.Name
	if q.Region != "" {
		s += "." + q.Region
	}
	if q.Provider != "" {
		s += "." + q.Provider
	}
	return s
}

// Target is one resolved instance.
type Target struct {
	// Provider is the name of the provider that owns the instance.
	Provider string
	// Name is the instance's name (Lightsail name, EC2 Name tag or static
	// name); for an EC2 instance without a Name tag it is the instance id.
	Name string
	// ID is the provider's stable identifier (EC2 instance id; Lightsail and
	// static use the name).
	ID string
	// Region is the AWS region, empty for static targets.
	Region string
	// Zone is the availability zone, where the provider knows it.
	Zone string
	// Tags are the instance's tags (EC2 and Lightsail), used by policies.
	Tags map[string]string
}

// String returns a name that identifies the target unambiguously, as it
// could be typed ("web-1.us-east-1.lightsail", "legacy-db.static").
func (t Target) String() string {
	if t.Region == "" {
		return t.Name + "." + t.Provider
	}
	return t.Name + "." + t.Region + "." + t.Provider
}

// Credentials are what the bastion needs to open the upstream SSH connection.
// They hold private key material: never log them, never write them to disk.
type Credentials struct {
	// Addr is the host:port to dial. With Dial set, it still names the
	// instance: in the audit log, in messages, and as the host given to
	// HostKeyCallback.
	Addr string
	// Dial, if set, opens the transport to the instance in place of a TCP
	// connection to Addr: a tunnel, an endpoint on another host, a stream
	// connected already. ctx carries the dial timeout and is cancelled
	// when the person goes away; Dial must return when ctx is done (the
	// proxy gives up waiting then, and closes a connection returned
	// later). The SSH handshake over the returned connection has the
	// handshake deadline (set with SetDeadline), and the connection is
	// closed if the person goes away. Nil, the default, dials Addr over
	// TCP.
	Dial func(ctx context.Context) (net.Conn, error)
	// User is the OS user to log in as.
	User string
	// Signer authenticates the bastion to the instance (a plain key or a
	// certificate signer).
	Signer ssh.Signer
	// HostKeyCallback verifies the instance's host key. It is never
	// ssh.InsecureIgnoreHostKey.
	HostKeyCallback ssh.HostKeyCallback
	// HostKeyAlgorithms, if non-empty, restricts the host key algorithms
	// offered, so that the instance presents a key the callback can check.
	HostKeyAlgorithms []string
	// HostKeySource says how the host key is trusted, for the audit log:
	// "lightsail" (from GetInstanceAccessDetails), "pinned",
	// "known_hosts" or "tofu".
	HostKeySource string
	// Expires is when the credentials stop working; zero means never.
	Expires time.Time
	// RequestID is the AWS request id of the call that issued them, if any.
	RequestID string
}

// Provider is one source of instances.
type Provider interface {
	// Name returns the provider's name (ProviderLightsail, …).
	Name() string
	// Resolve returns the instances matching q. q.Provider is either empty
	// or equal to Name(). No match is an empty slice and a nil error.
	Resolve(ctx context.Context, q Query) ([]Target, error)
	// Credentials returns credentials for logging in to t as osUser.
	Credentials(ctx context.Context, t Target, osUser string) (*Credentials, error)
}

// Lister is a Provider that can list every instance it serves, for the
// target listing (`ssh bastion`).
type Lister interface {
	// List returns the provider's instances that can be logged in to
	// (running ones).
	List(ctx context.Context) ([]Target, error)
}

// Prefetcher is a Provider that can start getting a target's credentials
// before the OS user is known, so that a Credentials call made soon after
// finds them ready or in flight. The proxy calls Prefetch while the
// person's inner SSH handshake runs.
type Prefetcher interface {
	Prefetch(ctx context.Context, t Target)
}

// Sentinel errors that callers branch on.
var (
	// ErrNotFound reports that no configured provider has the target.
	ErrNotFound = errors.New("no such target")
	// ErrAmbiguous reports that more than one instance matches the name.
	ErrAmbiguous = errors.New("target name is ambiguous")
	// ErrUserMismatch reports that the instance only admits another OS user
	// (Lightsail issues credentials for one user name).
	ErrUserMismatch = errors.New("os user not available on this target")
)

// Error is a failure that the person should see in one line, with the detail
// kept for the log. Providers return it for AWS failures so that the proxy
// can show "Lightsail GetInstanceAccessDetails failed: AccessDeniedException".
type Error struct {
	// Public is the fixed sentence shown to the person (without the
	// "bastion: target:" prefix).
	Public string
	// RequestID is the AWS request id, if any.
	RequestID string
	// Err is the underlying error, for logs.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Public
	}
	return e.Public + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// PublicMessage returns the one-line reason to show a person for err.
func PublicMessage(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Public
	}
	var ae *AmbiguousError
	if errors.As(err, &ae) {
		return ae.Error()
	}
	var he *HostKeyMismatchError
	if errors.As(err, &he) {
		return he.Public()
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return "no such target"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return "upstream error"
}

// AmbiguousError lists the candidates when a name matches several targets.
type AmbiguousError struct {
	Query      Query
	Candidates []Target
}

func (e *AmbiguousError) Error() string {
	names := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		names[i] = c.String()
	}
	return fmt.Sprintf("%s is ambiguous, type one of: %s", e.Query, strings.Join(names, ", "))
}

func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }
