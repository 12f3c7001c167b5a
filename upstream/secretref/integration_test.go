package secretref_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
	"bastion/upstream"
	"bastion/upstream/secretref"
)

// newKeyPEM returns a fresh private key in OpenSSH PEM form and its signer:
// ed25519, or ECDSA P-256 if ecdsaKey.
func newKeyPEM(t *testing.T, ecdsaKey bool) ([]byte, ssh.Signer) {
	t.Helper()
	var priv any
	var err error
	if ecdsaKey {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bastion-test")
	if err != nil {
		t.Fatalf("MarshalPrivateKey: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("NewSignerFromKey: %v", err)
	}
	return pem.EncodeToMemory(block), signer
}

// awsConfig is an SDK configuration for the fake, built field by field so
// that neither the environment nor shared files change it: region
// us-east-1, the fake's credentials and endpoint, attempts attempts with
// 1ms between them.
func awsConfig(s *awsfake.Server, attempts int) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), ""),
		BaseEndpoint: aws.String(s.URL()),
		Retryer: func() aws.Retryer {
			return retry.AddWithMaxBackoffDelay(retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = attempts }), time.Millisecond)
		},
	}
}

// TestFetchFromFake fetches host keys with the real SSM and Secrets
// Manager clients from the fake, over HTTP.
func TestFetchFromFake(t *testing.T) {
	t.Parallel()
	edPEM, edSigner := newKeyPEM(t, false)
	ecPEM, ecSigner := newKeyPEM(t, true)

	tests := []struct {
		name string
		// setup stores values and faults in the fake.
		setup    func(s *awsfake.Server)
		ref      string
		attempts int
		timeout  time.Duration
		// secret is a wrong secret key to sign with, if set.
		secret string
		// want is the key the value must hold; nil for a failure.
		want ssh.Signer
		// wantPublic is the Public sentence of a failure.
		wantPublic string
		// wantRegion is the region of the fake's last call, if set.
		wantRegion string
		// wantCalls are the statuses of the fake's calls, if set.
		wantCalls []int
		// mayNotArrive is set when the deadline may pass before the
		// request reaches the fake (on a loaded machine).
		mayNotArrive bool
	}{
		{
			name:  "ssm secure string",
			setup: func(s *awsfake.Server) { s.PutParameter("/bastion/host_ed25519", string(edPEM)) },
			ref:   "ssm:/bastion/host_ed25519", want: edSigner, wantRegion: "us-east-1",
		},
		{
			name: "ssm version",
			setup: func(s *awsfake.Server) {
				s.PutParameter("/bastion/host_ed25519", string(edPEM))
				s.PutParameter("/bastion/host_ed25519", string(ecPEM))
			},
			ref: "ssm:/bastion/host_ed25519:1", want: edSigner,
		},
		{
			name:  "ssm arn in another region",
			setup: func(s *awsfake.Server) { s.PutParameter("/bastion/host_ed25519", string(edPEM)) },
			ref:   "ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/bastion/host_ed25519", want: edSigner, wantRegion: "eu-west-1",
		},
		{
			name: "ssm string",
			setup: func(s *awsfake.Server) {
				s.PutParameterType("/bastion/host_ed25519", awsfake.ParameterTypeString, string(ecPEM))
			},
			ref: "ssm:/bastion/host_ed25519", want: ecSigner,
		},
		{
			name:       "ssm not found",
			ref:        "ssm:/bastion/host_ed25519",
			wantPublic: "SSM GetParameter /bastion/host_ed25519 failed: ParameterNotFound",
		},
		{
			name: "ssm access denied",
			setup: func(s *awsfake.Server) {
				s.PutParameter("/bastion/host_ed25519", string(edPEM))
				s.SetFault("GetParameter", awsfake.Fault{ErrorCode: "AccessDeniedException"})
			},
			ref: "ssm:/bastion/host_ed25519", attempts: 3,
			wantPublic: "SSM GetParameter /bastion/host_ed25519 failed: AccessDeniedException", wantCalls: []int{400},
		},
		{
			name: "ssm throttled then retried",
			setup: func(s *awsfake.Server) {
				s.PutParameter("/bastion/host_ed25519", string(edPEM))
				s.SetFault("GetParameter", awsfake.Fault{ThrottleFirst: 1})
			},
			ref: "ssm:/bastion/host_ed25519", attempts: 2, want: edSigner, wantCalls: []int{400, 200},
		},
		{
			name: "ssm hangs",
			setup: func(s *awsfake.Server) {
				s.PutParameter("/bastion/host_ed25519", string(edPEM))
				s.SetFault("GetParameter", awsfake.Fault{Hang: true})
			},
			ref: "ssm:/bastion/host_ed25519", timeout: 100 * time.Millisecond,
			wantPublic:   "SSM GetParameter /bastion/host_ed25519 timed out after 100ms",
			mayNotArrive: true,
		},
		{
			name:  "ssm wrong credentials",
			setup: func(s *awsfake.Server) { s.PutParameter("/bastion/host_ed25519", string(edPEM)) },
			ref:   "ssm:/bastion/host_ed25519", secret: "wrong", attempts: 3,
			wantPublic: "SSM GetParameter /bastion/host_ed25519 failed: InvalidSignatureException", wantCalls: []int{403},
		},
		{
			name:  "secrets manager string",
			setup: func(s *awsfake.Server) { s.PutSecret("bastion/host_ca_ed25519", string(edPEM)) },
			ref:   "secretsmanager:bastion/host_ca_ed25519", want: edSigner, wantRegion: "us-east-1",
		},
		{
			name:  "secrets manager binary",
			setup: func(s *awsfake.Server) { s.PutSecretBinary("bastion/host_ca_ed25519", ecPEM) },
			ref:   "secretsmanager:bastion/host_ca_ed25519", want: ecSigner,
		},
		{
			name:  "secrets manager partial arn in another region",
			setup: func(s *awsfake.Server) { s.PutSecret("bastion/host_ca_ed25519", string(edPEM)) },
			ref:   "secretsmanager:arn:aws:secretsmanager:ap-south-1:123456789012:secret:bastion/host_ca_ed25519",
			want:  edSigner, wantRegion: "ap-south-1",
		},
		{
			name:       "secrets manager not found",
			ref:        "secretsmanager:bastion/host_ca_ed25519",
			wantPublic: "Secrets Manager GetSecretValue bastion/host_ca_ed25519 failed: ResourceNotFoundException",
		},
		{
			name: "secrets manager server errors",
			setup: func(s *awsfake.Server) {
				s.PutSecret("bastion/host_ca_ed25519", string(edPEM))
				s.SetFault("GetSecretValue", awsfake.Fault{ServerErrorFirst: 5})
			},
			ref: "secretsmanager:bastion/host_ca_ed25519", attempts: 2,
			wantPublic: "Secrets Manager GetSecretValue bastion/host_ca_ed25519 failed: ServiceException", wantCalls: []int{500, 500},
		},
		{
			name: "secrets manager malformed answer",
			setup: func(s *awsfake.Server) {
				s.PutSecret("bastion/host_ca_ed25519", string(edPEM))
				s.SetFault("GetSecretValue", awsfake.Fault{Malformed: true})
			},
			ref:        "secretsmanager:bastion/host_ca_ed25519",
			wantPublic: "Secrets Manager GetSecretValue bastion/host_ca_ed25519 failed: malformed response",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := awsfake.Start(awsfake.Options{Logger: zaptest.NewLogger(t)})
			if err != nil {
				t.Fatalf("starting fake: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			if tc.setup != nil {
				tc.setup(s)
			}
			if tc.attempts == 0 {
				tc.attempts = 1
			}
			cfg := awsConfig(s, tc.attempts)
			if tc.secret != "" {
				cfg.Credentials = credentials.NewStaticCredentialsProvider(s.AccessKeyID(), tc.secret, "")
			}
			ref, err := secretref.Parse(tc.ref)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.ref, err)
			}

			f := secretref.NewFetcher(cfg)
			f.Timeout = tc.timeout
			f.Logger = zaptest.NewLogger(t)
			value, err := f.Fetch(t.Context(), ref)

			if tc.wantPublic != "" {
				if got := upstream.PublicMessage(err); got != tc.wantPublic {
					t.Errorf("PublicMessage: got %q, want %q (error %v)", got, tc.wantPublic, err)
				}
				if value != nil {
					t.Errorf("value: got %d bytes, want none", len(value))
				}
			} else {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				signer, err := ssh.ParsePrivateKey(value)
				if err != nil {
					t.Fatalf("parsing the fetched key: %v", err)
				}
				if got, want := signer.PublicKey().Marshal(), tc.want.PublicKey().Marshal(); !bytes.Equal(got, want) {
					t.Errorf("key: got %s, want %s", ssh.FingerprintSHA256(signer.PublicKey()), ssh.FingerprintSHA256(tc.want.PublicKey()))
				}
			}

			calls := s.Calls()
			if len(calls) == 0 {
				if !tc.mayNotArrive {
					t.Error("fake calls: got none, want at least one")
				}
				return
			}
			last := calls[len(calls)-1]
			if tc.wantRegion != "" && last.Region != tc.wantRegion {
				t.Errorf("region: got %q, want %q", last.Region, tc.wantRegion)
			}
			if ref.Kind == secretref.SSM && last.Params["WithDecryption"] != "true" {
				t.Errorf("WithDecryption: got %q, want %q", last.Params["WithDecryption"], "true")
			}
			if tc.wantCalls != nil {
				var statuses []int
				for _, c := range calls {
					statuses = append(statuses, c.Status)
				}
				if !slices.Equal(statuses, tc.wantCalls) {
					t.Errorf("statuses: got %v, want %v", statuses, tc.wantCalls)
				}
			}
		})
	}
}

// TestFetchFunc checks the package-level Fetch against the fake.
func TestFetchFunc(t *testing.T) {
	t.Parallel()
	s, err := awsfake.Start(awsfake.Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("starting fake: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	edPEM, _ := newKeyPEM(t, false)
	s.PutParameter("/bastion/host_ed25519", string(edPEM))

	got, err := secretref.Fetch(t.Context(), awsConfig(s, 1), secretref.Ref{Kind: secretref.SSM, Name: "/bastion/host_ed25519"}, time.Minute)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Equal(got, edPEM) {
		t.Errorf("Fetch: got %q, want %q", got, edPEM)
	}
}
