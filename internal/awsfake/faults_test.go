package awsfake

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"github.com/aws/smithy-go"
)

// watchdog bounds how long a call that must not hang may take. It is a
// guard against a hung test, not a timing assertion.
const watchdog = 5 * time.Second

// opCaseByName returns the opCase for op.
func opCaseByName(t *testing.T, op string) opCase {
	t.Helper()
	for _, oc := range opCases(t) {
		if oc.op == op {
			return oc
		}
	}
	t.Fatalf("no opCase for %s", op)
	return opCase{}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// faultOp is the operation the fault is set for ("" for all); op
		// is the one called.
		faultOp, op string
		fault       Fault
		attempts    int
		// wantCode is the error code of the call, "" for success.
		wantCode string
		// wantErr, if set, reports whether the error has the expected type.
		wantErr func(error) bool
		// wantStatuses are the statuses of the recorded calls.
		wantStatuses []int
	}{
		{
			name:    "lightsail throttled twice then retried",
			faultOp: "GetInstanceAccessDetails", op: "GetInstanceAccessDetails",
			fault: Fault{ThrottleFirst: 2}, attempts: 3,
			wantStatuses: []int{400, 400, 200},
		},
		{
			name:    "ec2 throttled twice then retried",
			faultOp: "DescribeInstances", op: "DescribeInstances",
			fault: Fault{ThrottleFirst: 2}, attempts: 3,
			wantStatuses: []int{503, 503, 200},
		},
		{
			name:    "instance connect throttled once then retried",
			faultOp: "SendSSHPublicKey", op: "SendSSHPublicKey",
			fault: Fault{ThrottleFirst: 1}, attempts: 3,
			wantStatuses: []int{400, 200},
		},
		{
			name:    "throttled more than attempts",
			faultOp: "GetInstance", op: "GetInstance",
			fault: Fault{ThrottleFirst: 5}, attempts: 2,
			wantCode: "ThrottlingException", wantStatuses: []int{400, 400},
		},
		{
			name:    "lightsail server errors more than attempts",
			faultOp: "GetInstanceAccessDetails", op: "GetInstanceAccessDetails",
			fault: Fault{ServerErrorFirst: 5}, attempts: 3,
			wantCode: "ServiceException", wantStatuses: []int{500, 500, 500},
		},
		{
			name:    "ec2 server errors more than attempts",
			faultOp: "DescribeInstances", op: "DescribeInstances",
			fault: Fault{ServerErrorFirst: 5}, attempts: 2,
			wantCode: "InternalError", wantStatuses: []int{500, 500},
		},
		{
			name:    "server error then retried",
			faultOp: "SendSSHPublicKey", op: "SendSSHPublicKey",
			fault: Fault{ServerErrorFirst: 1}, attempts: 2,
			wantStatuses: []int{500, 200},
		},
		{
			name:    "throttle then server error then success",
			faultOp: "GetInstance", op: "GetInstance",
			fault: Fault{ThrottleFirst: 1, ServerErrorFirst: 1}, attempts: 3,
			wantStatuses: []int{400, 500, 200},
		},
		{
			name:    "lightsail access denied",
			faultOp: "GetInstanceAccessDetails", op: "GetInstanceAccessDetails",
			fault: Fault{ErrorCode: "AccessDeniedException"}, attempts: 3,
			wantCode: "AccessDeniedException",
			wantErr: func(err error) bool {
				var ade *types.AccessDeniedException
				return errors.As(err, &ade)
			},
			wantStatuses: []int{400},
		},
		{
			name:    "ec2 unauthorized",
			faultOp: "DescribeInstances", op: "DescribeInstances",
			fault: Fault{ErrorCode: "UnauthorizedOperation"}, attempts: 3,
			wantCode: "UnauthorizedOperation", wantStatuses: []int{403},
		},
		{
			name:    "error code after throttling",
			faultOp: "GetInstance", op: "GetInstance",
			fault: Fault{ThrottleFirst: 1, ErrorCode: "NotFoundException"}, attempts: 3,
			wantCode: "NotFoundException", wantStatuses: []int{400, 400},
		},
		{
			name:    "lightsail malformed",
			faultOp: "GetInstanceAccessDetails", op: "GetInstanceAccessDetails",
			fault: Fault{Malformed: true}, attempts: 1,
			wantErr: isDeserializationError, wantStatuses: []int{200},
		},
		{
			name:    "ec2 malformed",
			faultOp: "DescribeInstances", op: "DescribeInstances",
			fault: Fault{Malformed: true}, attempts: 1,
			wantErr: isDeserializationError, wantStatuses: []int{200},
		},
		{
			name:    "instance connect malformed",
			faultOp: "SendSSHPublicKey", op: "SendSSHPublicKey",
			fault: Fault{Malformed: true}, attempts: 1,
			wantErr: isDeserializationError, wantStatuses: []int{200},
		},
		{
			name:    "fault for every operation",
			faultOp: "", op: "SendSSHPublicKey",
			fault: Fault{ErrorCode: "AccessDeniedException"}, attempts: 1,
			wantCode: "AccessDeniedException", wantStatuses: []int{400},
		},
		{
			name:    "fault for another operation",
			faultOp: "GetInstanceAccessDetails", op: "GetInstance",
			fault: Fault{ErrorCode: "AccessDeniedException"}, attempts: 1,
			wantStatuses: []int{200},
		},
		{
			name:    "latency",
			faultOp: "GetInstance", op: "GetInstance",
			fault: Fault{Latency: 10 * time.Millisecond}, attempts: 1,
			wantStatuses: []int{200},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{})
			addOpInstances(s, DefaultRegion)
			s.SetFault(tc.faultOp, tc.fault)
			oc := opCaseByName(t, tc.op)

			_, err := oc.call(t, s, clientConfig{attempts: tc.attempts})(t.Context())
			switch {
			case tc.wantCode == "" && tc.wantErr == nil && err != nil:
				t.Fatalf("got error %v, want nil", err)
			case (tc.wantCode != "" || tc.wantErr != nil) && err == nil:
				t.Fatal("got nil error, want one")
			}
			if tc.wantCode != "" {
				if got := errorCode(err); got != tc.wantCode {
					t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
				}
			}
			if tc.wantErr != nil && !tc.wantErr(err) {
				t.Errorf("error: got %T (%v), want another type", err, err)
			}
			if got, want := s.CallCount(tc.op), len(tc.wantStatuses); got != want {
				t.Errorf("CallCount(%s): got %d, want %d", tc.op, got, want)
			}
			var statuses []int
			for _, c := range s.Calls() {
				statuses = append(statuses, c.Status)
			}
			if !slices.Equal(statuses, tc.wantStatuses) {
				t.Errorf("statuses: got %v, want %v", statuses, tc.wantStatuses)
			}

			// Once cleared, the operation answers normally.
			s.ClearFaults()
			if _, err := oc.call(t, s, clientConfig{})(t.Context()); err != nil {
				t.Errorf("after ClearFaults: got error %v, want nil", err)
			}
		})
	}
}

func isDeserializationError(err error) bool {
	var de *smithy.DeserializationError
	return errors.As(err, &de)
}

// callWithin runs call with a watchdog and returns its error.
func callWithin(t *testing.T, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(watchdog):
		t.Fatalf("call did not return in %v", watchdog)
		return nil
	}
}

// TestFaultsClientGivesUp checks that a request held by Hang or Latency
// ends when the client's context does.
func TestFaultsClientGivesUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		op    string
		fault Fault
	}{
		{"lightsail hang", "GetInstanceAccessDetails", Fault{Hang: true}},
		{"ec2 hang", "DescribeInstances", Fault{Hang: true}},
		{"instance connect hang", "SendSSHPublicKey", Fault{Hang: true}},
		{"long latency", "GetInstance", Fault{Latency: time.Hour}},
		{"hang with throttling", "GetInstance", Fault{Hang: true, ThrottleFirst: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{})
			addOpInstances(s, DefaultRegion)
			s.SetFault(tc.op, tc.fault)
			oc := opCaseByName(t, tc.op)

			// The client gives up once its request has reached the fake
			// (a fixed deadline could run out first on a loaded machine).
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				deadline := time.Now().Add(10 * time.Second)
				for s.CallCount(tc.op) == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
			call := oc.call(t, s, clientConfig{attempts: 3})
			err := callWithin(t, func() error {
				_, err := call(ctx)
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error: got %v, want context.Canceled", err)
			}
			if got := s.CallCount(tc.op); got != 1 {
				t.Errorf("CallCount(%s): got %d, want 1", tc.op, got)
			}
		})
	}
}

// TestCloseAbortsHang checks that Close ends a request held by Hang, and
// records it without a status.
func TestCloseAbortsHang(t *testing.T) {
	t.Parallel()
	// The server reads its clock when a request arrives: once armed, the
	// clock tells the test that the server has the request.
	var (
		armed   atomic.Bool
		arrived = make(chan struct{})
		once    sync.Once
	)
	clock := newFakeClock()
	now := func() time.Time {
		if armed.Load() {
			once.Do(func() { close(arrived) })
		}
		return clock.Now()
	}
	s := startServer(t, Options{Now: now})
	addOpInstances(s, DefaultRegion)
	s.SetFault("", Fault{Hang: true})
	call := opCaseByName(t, "GetInstance").call(t, s, clientConfig{})
	armed.Store(true)

	done := make(chan error, 1)
	go func() {
		_, err := call(t.Context())
		done <- err
	}()
	select {
	case <-arrived:
	case err := <-done:
		t.Fatalf("call returned before Close: %v", err)
	}
	// The clock is read before the call is recorded: wait for the record
	// too, or a Close in between (seen once in CI under load) drops the
	// request unrecorded.
	deadline := time.Now().Add(watchdog)
	for len(s.Calls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server read its clock but recorded no call within %v", watchdog)
		}
		select {
		case err := <-done:
			t.Fatalf("call returned before Close: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	// The server has the request: it either holds it already or sees that
	// it is closing as soon as it applies the fault.
	if err := callWithin(t, s.Close); err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("call: got nil error, want one")
		}
	case <-time.After(watchdog):
		t.Fatalf("call did not return in %v after Close", watchdog)
	}
	calls := s.Calls()
	if len(calls) != 1 || calls[0].Status != 0 {
		t.Errorf("calls: got %+v, want one with status 0", calls)
	}
}
