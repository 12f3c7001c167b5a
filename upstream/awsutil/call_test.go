package awsutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"bastion/upstream"
)

// sdkError builds an error shaped like the one an SDK client returns for
// an API error response.
func sdkError(status int, requestID string, err error) error {
	return &smithy.OperationError{
		ServiceID:     "Lightsail",
		OperationName: "GetInstanceAccessDetails",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      err,
			},
			RequestID: requestID,
		},
	}
}

func TestToError(t *testing.T) {
	t.Parallel()
	existing := &upstream.Error{Public: "already said"}
	tests := []struct {
		name          string
		timeout       time.Duration
		err           error
		wantPublic    string
		wantRequestID string
	}{
		{
			name:          "api error",
			timeout:       10 * time.Second,
			err:           sdkError(400, "req-1", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"}),
			wantPublic:    "Lightsail GetInstanceAccessDetails failed: AccessDeniedException",
			wantRequestID: "req-1",
		},
		{
			name:       "deadline",
			timeout:    10 * time.Second,
			err:        &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: fmt.Errorf("dial: %w", context.DeadlineExceeded)}},
			wantPublic: "Lightsail GetInstanceAccessDetails timed out after 10s",
		},
		{
			name:       "deadline without timeout",
			err:        context.DeadlineExceeded,
			wantPublic: "Lightsail GetInstanceAccessDetails timed out",
		},
		{
			name:       "cancelled",
			err:        fmt.Errorf("sending: %w", context.Canceled),
			wantPublic: "Lightsail GetInstanceAccessDetails was cancelled",
		},
		{
			name:       "connection refused",
			err:        &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}},
			wantPublic: "Lightsail GetInstanceAccessDetails failed: endpoint unreachable",
		},
		{
			name:       "net error",
			err:        &net.OpError{Op: "dial", Err: errors.New("no route to host")},
			wantPublic: "Lightsail GetInstanceAccessDetails failed: endpoint unreachable",
		},
		{
			name:       "no credentials",
			err:        &smithy.OperationError{Err: &v4.SigningError{Err: errors.New("failed to retrieve credentials")}},
			wantPublic: "the bastion has no AWS credentials",
		},
		{
			name:          "malformed",
			err:           sdkError(200, "req-2", &smithy.DeserializationError{Err: errors.New("unexpected EOF")}),
			wantPublic:    "Lightsail GetInstanceAccessDetails failed: malformed response",
			wantRequestID: "req-2",
		},
		{
			name:       "other",
			err:        errors.New("something"),
			wantPublic: "Lightsail GetInstanceAccessDetails failed",
		},
		{
			name:       "already an upstream error",
			err:        fmt.Errorf("wrapped: %w", existing),
			wantPublic: "already said",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ToError(ServiceLightsail, "GetInstanceAccessDetails", tc.timeout, tc.err)
			if got.Public != tc.wantPublic {
				t.Errorf("Public = %q, want %q", got.Public, tc.wantPublic)
			}
			if got.RequestID != tc.wantRequestID {
				t.Errorf("RequestID = %q, want %q", got.RequestID, tc.wantRequestID)
			}
			if !errors.Is(got, tc.err) && !errors.Is(tc.err, got) {
				t.Errorf("ToError(%v) does not wrap the SDK error", tc.err)
			}
		})
	}
	if got := ToError("X", "Y", 0, nil); got != nil {
		t.Errorf("ToError(nil) = %v, want nil", got)
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	err := sdkError(400, "r", &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound"})
	if got, want := ErrorCode(err), "InvalidInstanceID.NotFound"; got != want {
		t.Errorf("ErrorCode = %q, want %q", got, want)
	}
	if got := ErrorCode(errors.New("plain")); got != "" {
		t.Errorf("ErrorCode(plain) = %q, want empty", got)
	}
	if !IsErrorCode(err, "X", "InvalidInstanceID.NotFound") {
		t.Error("IsErrorCode = false, want true")
	}
	if IsErrorCode(errors.New("plain"), "") {
		t.Error("IsErrorCode(plain, \"\") = true, want false")
	}
}

func TestDoSuccessLogsRequestID(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	c := Call{
		Service:   ServiceEC2,
		Operation: "DescribeInstances",
		Logger:    zap.New(core),
		Fields:    []zap.Field{zap.String("region", "eu-west-1")},
	}
	got, reqID, err := Do(context.Background(), c, func(ctx context.Context) (string, middleware.Metadata, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("call context has no deadline")
		}
		var md middleware.Metadata
		awsmiddleware.SetRequestIDMetadata(&md, "req-42")
		return "out", md, nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got != "out" || reqID != "req-42" {
		t.Errorf("Do = %q, %q, want %q, %q", got, reqID, "out", "req-42")
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("got %d log entries, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	for k, want := range map[string]string{"operation": "DescribeInstances", "region": "eu-west-1", "request_id": "req-42"} {
		if fields[k] != want {
			t.Errorf("log field %s = %v, want %q", k, fields[k], want)
		}
	}
	if _, ok := fields["duration"]; !ok {
		t.Error("log entry has no duration")
	}
}

func TestDoDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		parent     func() (context.Context, context.CancelFunc)
		wantPublic string
	}{
		{
			name:       "own deadline",
			parent:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			wantPublic: "Lightsail GetInstance timed out after 20ms",
		},
		{
			name: "caller cancelled",
			parent: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantPublic: "Lightsail GetInstance was cancelled",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := tc.parent()
			defer cancel()
			c := Call{Service: ServiceLightsail, Operation: "GetInstance", Timeout: 20 * time.Millisecond}
			_, _, err := Do(ctx, c, func(ctx context.Context) (int, middleware.Metadata, error) {
				<-ctx.Done()
				return 0, middleware.Metadata{}, &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: ctx.Err()}}
			})
			var ue *upstream.Error
			if !errors.As(err, &ue) {
				t.Fatalf("Do error = %v, want *upstream.Error", err)
			}
			if ue.Public != tc.wantPublic {
				t.Errorf("Public = %q, want %q", ue.Public, tc.wantPublic)
			}
		})
	}
}

func TestToErrorNoCredentials(t *testing.T) {
	// The SDK wraps a credentials provider's error in its own words.
	_, inner := markedCredentials{failingProvider{}}.Retrieve(context.Background())
	err := fmt.Errorf("operation error Lightsail: GetInstance, get identity: get credentials: %w",
		fmt.Errorf("failed to refresh cached credentials, %w", inner))
	if got := ToError("Lightsail", "GetInstance", 0, err).Public; got != "the bastion has no AWS credentials" {
		t.Errorf("Public: got %q, want the bastion has no AWS credentials", got)
	}
}

// failingProvider is a credentials provider that finds nothing.
type failingProvider struct{}

func (failingProvider) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("no EC2 IMDS role found")
}
