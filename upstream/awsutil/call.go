package awsutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"

	"bastion/upstream"
)

// DefaultCallTimeout is the deadline of one AWS API call, retries included,
// when a provider's configuration does not set one.
const DefaultCallTimeout = 10 * time.Second

// Service labels used in messages, as AWS names the services.
const (
	ServiceLightsail       = "Lightsail"
	ServiceEC2             = "EC2"
	ServiceInstanceConnect = "EC2 Instance Connect"
)

// Call describes one AWS API call for its deadline, its log line and its
// error message.
type Call struct {
	// Service is the service label shown to people (ServiceLightsail, …).
	Service string
	// Operation is the API operation name ("GetInstanceAccessDetails").
	Operation string
	// Timeout bounds the call including all of the SDK's retries; zero
	// means DefaultCallTimeout.
	Timeout time.Duration
	// Logger receives one line per call; if nil, nothing is logged.
	Logger *zap.Logger
	// Fields are added to the log line (instance, region). They must not
	// hold secrets.
	Fields []zap.Field
	// ExpectedCodes are AWS error codes that are a normal answer for this
	// call (NotFoundException for a lookup); they are logged at info
	// level rather than as warnings. Do still returns them as errors.
	ExpectedCodes []string
	// Observe, if non-nil, is told of every call when it returns (for
	// metrics).
	Observe Observer
}

// Observer is told of one AWS API call: its service and operation, how long
// it took with retries, and on failure the error and its AWS error code
// ("timeout" for the call's own deadline).
type Observer func(service, operation string, d time.Duration, err error, code string)

// Do runs fn under a context that expires after c.Timeout, logs the call
// (operation, the caller's fields, request_id, duration and any error) and
// returns fn's result, the AWS request id (from the response metadata on
// success, from the response error on failure) and, on failure, an
// *upstream.Error that wraps the SDK error.
//
// fn returns the output's ResultMetadata next to the output so that Do can
// read the request id without knowing the output type.
func Do[T any](ctx context.Context, c Call, fn func(context.Context) (T, middleware.Metadata, error)) (T, string, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	out, md, err := fn(callCtx)
	elapsed := time.Since(start)

	var requestID string
	var uerr *upstream.Error
	if err == nil {
		requestID, _ = awsmiddleware.GetRequestIDMetadata(md)
	} else {
		// Only our own deadline earns "timed out after 10s"; a caller's
		// shorter deadline or a cancellation is reported as such.
		ownDeadline := errors.Is(callCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		uerr = toError(c.Service, c.Operation, timeout, ownDeadline, err)
		requestID = uerr.RequestID
	}

	if c.Observe != nil {
		code := ErrorCode(err)
		if err != nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) {
			code = "timeout"
		}
		c.Observe(c.Service, c.Operation, elapsed, err, code)
	}
	if c.Logger != nil {
		fields := make([]zap.Field, 0, len(c.Fields)+6)
		fields = append(fields, zap.String("service", c.Service), zap.String("operation", c.Operation))
		fields = append(fields, c.Fields...)
		fields = append(fields, zap.String("request_id", requestID), zap.Duration("duration", elapsed))
		switch {
		case err == nil:
			c.Logger.Info("aws call", fields...)
		case IsErrorCode(err, c.ExpectedCodes...):
			fields = append(fields, zap.String("error_code", ErrorCode(err)))
			c.Logger.Info("aws call", fields...)
		default:
			fields = append(fields, zap.String("error_code", ErrorCode(err)), zap.Error(err))
			c.Logger.Warn("aws call failed", fields...)
		}
	}
	if err != nil {
		var zero T
		return zero, requestID, uerr
	}
	return out, requestID, nil
}

// ToError turns an error returned by an AWS SDK client into an
// *upstream.Error whose Public sentence names the service and operation and
// says what went wrong, for example
//
//	Lightsail GetInstanceAccessDetails failed: AccessDeniedException
//	Lightsail GetInstanceAccessDetails timed out after 10s
//	EC2 DescribeInstances failed: endpoint unreachable
//
// timeout is the call's deadline, used in the "timed out" sentence (zero
// omits it). The AWS request id is copied from the SDK's response error. An
// err that already is an *upstream.Error is returned as is; nil gives nil.
func ToError(service, operation string, timeout time.Duration, err error) *upstream.Error {
	if err == nil {
		return nil
	}
	return toError(service, operation, timeout, false, err)
}

func toError(service, operation string, timeout time.Duration, timedOut bool, err error) *upstream.Error {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return ue
	}
	what := service + " " + operation
	e := &upstream.Error{RequestID: RequestID(err), Err: err}

	var (
		apiErr  smithy.APIError
		sendErr *smithyhttp.RequestSendError
		netErr  net.Error
		sigErr  *v4.SigningError
		desErr  *smithy.DeserializationError
	)
	switch {
	case timedOut || errors.Is(err, context.DeadlineExceeded):
		if timeout > 0 {
			e.Public = fmt.Sprintf("%s timed out after %s", what, timeout)
		} else {
			e.Public = what + " timed out"
		}
	case errors.Is(err, context.Canceled):
		e.Public = what + " was cancelled"
	case errors.Is(err, ErrNoCredentials):
		e.Public = "the bastion has no AWS credentials"
	case errors.As(err, &apiErr) && apiErr.ErrorCode() != "":
		e.Public = what + " failed: " + apiErr.ErrorCode()
	case errors.As(err, &sigErr):
		// The SDK found no credentials to sign with: the operator's
		// problem, told plainly, without the service or its internals.
		e.Public = "the bastion has no AWS credentials"
	case errors.As(err, &desErr):
		e.Public = what + " failed: malformed response"
	case errors.As(err, &sendErr), errors.As(err, &netErr):
		e.Public = what + " failed: endpoint unreachable"
	default:
		e.Public = what + " failed"
	}
	return e
}

// RequestID returns the AWS request id carried by an SDK error, or "".
func RequestID(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.ServiceRequestID()
	}
	return ""
}

// ErrorCode returns the AWS error code of an SDK error
// ("AccessDeniedException", "InvalidInstanceID.NotFound"), or "".
func ErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// IsErrorCode reports whether err is an AWS API error with one of codes.
func IsErrorCode(err error, codes ...string) bool {
	code := ErrorCode(err)
	return code != "" && slices.Contains(codes, code)
}
