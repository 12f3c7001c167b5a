package awsfake

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"
)

// testStart is when fakeClock starts; far from the real time on purpose.
var testStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: testStart} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startServer starts a fake with a test logger and closes it at cleanup.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// clientConfig is how a test client differs from the default one.
type clientConfig struct {
	region        string
	keyID, secret string
	// attempts is the SDK's maximum number of attempts; if zero, 1 (no
	// retries).
	attempts int
}

// retryBackoff is the delay between attempts of the test clients, short so
// that retry tests stay fast.
const retryBackoff = time.Millisecond

// awsConfig loads an SDK config that signs with the server's credentials
// (unless cc overrides them), makes cc.attempts attempts and ignores shared
// files.
func awsConfig(t *testing.T, s *Server, cc clientConfig) aws.Config {
	t.Helper()
	if cc.region == "" {
		cc.region = DefaultRegion
	}
	if cc.attempts == 0 {
		cc.attempts = 1
	}
	if cc.keyID == "" {
		cc.keyID = s.AccessKeyID()
	}
	if cc.secret == "" {
		cc.secret = s.SecretAccessKey()
	}
	cfg, err := config.LoadDefaultConfig(t.Context(),
		config.WithRegion(cc.region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cc.keyID, cc.secret, "")),
		config.WithRetryMaxAttempts(cc.attempts),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return cfg
}

// hideWriteTo is an SDK HTTP client that hides the io.WriterTo of request
// bodies from net/http.
//
// It works around a race between smithy-go and net/http that a fast server
// on loopback wins often enough to fail tests: smithy-go closes the request
// body as soon as the response headers arrive, and its closed body's WriteTo
// returns io.EOF. net/http's write loop, still probing the body for bytes
// beyond Content-Length with io.Copy, takes that io.EOF for a write error
// and closes the connection under the response body being read ("use of
// closed network connection"), which shows with bodies larger than the
// transport's 4 KiB read buffer. A plain Read after Close returns
// (0, io.EOF), which io.Copy treats as the end of the body.
type hideWriteTo struct{ next smithyhttp.ClientDo }

func (c hideWriteTo) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = struct{ io.ReadCloser }{req.Body}
	}
	return c.next.Do(req)
}

// fastRetry makes a client's retryer wait only retryBackoff between
// attempts. It is an option function for any SDK client, applied after the
// client resolved its retryer from the config.
func fastRetry(r *aws.Retryer) {
	*r = retry.AddWithMaxBackoffDelay(*r, retryBackoff)
}

func lightsailClient(t *testing.T, s *Server, cc clientConfig, fns ...func(*lightsail.Options)) *lightsail.Client {
	t.Helper()
	fns = append([]func(*lightsail.Options){func(o *lightsail.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return lightsail.NewFromConfig(awsConfig(t, s, cc), fns...)
}

func ec2Client(t *testing.T, s *Server, cc clientConfig, fns ...func(*ec2.Options)) *ec2.Client {
	t.Helper()
	fns = append([]func(*ec2.Options){func(o *ec2.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return ec2.NewFromConfig(awsConfig(t, s, cc), fns...)
}

func eicClient(t *testing.T, s *Server, cc clientConfig, fns ...func(*ec2instanceconnect.Options)) *ec2instanceconnect.Client {
	t.Helper()
	fns = append([]func(*ec2instanceconnect.Options){func(o *ec2instanceconnect.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return ec2instanceconnect.NewFromConfig(awsConfig(t, s, cc), fns...)
}

// errorCode returns the AWS error code of err, "" if it has none.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// errorStatus returns the HTTP status of err, 0 if it has none.
func errorStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// errorRequestID returns the AWS request id of err, "" if it has none.
func errorRequestID(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.ServiceRequestID()
	}
	return ""
}

// newEd25519Key returns a fresh ed25519 SSH key pair.
func newEd25519Key(t *testing.T) (ssh.PublicKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("NewSignerFromKey: %v", err)
	}
	return signer.PublicKey(), signer
}

// connMeta is a minimal ssh.ConnMetadata for ssh.CertChecker.
type connMeta struct{ user string }

func (c connMeta) User() string          { return c.user }
func (c connMeta) SessionID() []byte     { return []byte("session") }
func (c connMeta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (c connMeta) ServerVersion() []byte { return []byte("SSH-2.0-test") }
func (c connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222} }
func (c connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

// lastCall returns the server's most recent call.
func lastCall(t *testing.T, s *Server) Call {
	t.Helper()
	calls := s.Calls()
	if len(calls) == 0 {
		t.Fatal("got no calls, want at least one")
	}
	return calls[len(calls)-1]
}
