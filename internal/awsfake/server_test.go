package awsfake

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/crypto/ssh"
)

// The instances every opCall addresses, in every region.
const (
	opLightsailName = "web-1"
	opEC2ID         = "i-0123456789abcdef0"
)

// addOpInstances adds the instances that the opCalls address to region.
func addOpInstances(s *Server, region string) {
	s.AddLightsailInstance(LightsailInstance{Name: opLightsailName, Region: region, PublicIP: "203.0.113.10"})
	s.AddEC2Instance(EC2Instance{ID: opEC2ID, Region: region, PrivateIP: "10.0.0.5"})
}

// opCall makes a client for s and returns a function that makes one SDK
// call with it and returns the request id the SDK reports for a success.
// The client is made on the test goroutine; the call may run on any.
type opCall func(t *testing.T, s *Server, cc clientConfig) func(ctx context.Context) (requestID string, err error)

// opCase is one operation of the fake, called through the real SDK.
type opCase struct {
	service, op string
	call        opCall
	// param is a Call.Params entry the call must record, if not empty.
	param, paramValue string
}

func requestID(md middleware.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	return id
}

// opCases lists every operation of the fake.
func opCases(t *testing.T) []opCase {
	t.Helper()
	key, _ := newEd25519Key(t)
	return []opCase{
		{
			service: ServiceLightsail, op: "GetInstanceAccessDetails",
			param: "instanceName", paramValue: opLightsailName,
			call: func(t *testing.T, s *Server, cc clientConfig) func(context.Context) (string, error) {
				c := lightsailClient(t, s, cc)
				return func(ctx context.Context) (string, error) {
					out, err := c.GetInstanceAccessDetails(ctx,
						&lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String(opLightsailName)})
					if err != nil {
						return "", err
					}
					return requestID(out.ResultMetadata), nil
				}
			},
		},
		{
			service: ServiceLightsail, op: "GetInstance",
			param: "instanceName", paramValue: opLightsailName,
			call: func(t *testing.T, s *Server, cc clientConfig) func(context.Context) (string, error) {
				c := lightsailClient(t, s, cc)
				return func(ctx context.Context) (string, error) {
					out, err := c.GetInstance(ctx, &lightsail.GetInstanceInput{InstanceName: aws.String(opLightsailName)})
					if err != nil {
						return "", err
					}
					return requestID(out.ResultMetadata), nil
				}
			},
		},
		{
			service: ServiceLightsail, op: "GetInstances",
			call: func(t *testing.T, s *Server, cc clientConfig) func(context.Context) (string, error) {
				c := lightsailClient(t, s, cc)
				return func(ctx context.Context) (string, error) {
					out, err := c.GetInstances(ctx, &lightsail.GetInstancesInput{})
					if err != nil {
						return "", err
					}
					return requestID(out.ResultMetadata), nil
				}
			},
		},
		{
			service: ServiceEC2, op: "DescribeInstances",
			param: "InstanceId.1", paramValue: opEC2ID,
			call: func(t *testing.T, s *Server, cc clientConfig) func(context.Context) (string, error) {
				c := ec2Client(t, s, cc)
				return func(ctx context.Context) (string, error) {
					out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{opEC2ID}})
					if err != nil {
						return "", err
					}
					return requestID(out.ResultMetadata), nil
				}
			},
		},
		{
			service: ServiceInstanceConnect, op: "SendSSHPublicKey",
			param: "InstanceId", paramValue: opEC2ID,
			call: func(t *testing.T, s *Server, cc clientConfig) func(context.Context) (string, error) {
				c := eicClient(t, s, cc)
				return func(ctx context.Context) (string, error) {
					out, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
						InstanceId:     aws.String(opEC2ID),
						InstanceOSUser: aws.String("ec2-user"),
						SSHPublicKey:   aws.String(string(ssh.MarshalAuthorizedKey(key))),
					})
					if err != nil {
						return "", err
					}
					return requestID(out.ResultMetadata), nil
				}
			},
		},
	}
}

// TestCalls checks that every request is recorded with its service,
// operation, region, outcome and the request id the SDK reports.
func TestCalls(t *testing.T) {
	t.Parallel()
	for _, oc := range opCases(t) {
		t.Run(oc.op, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := startServer(t, Options{Now: clock.Now})
			addOpInstances(s, "eu-west-1")

			// A success in the region of the instances.
			id, err := oc.call(t, s, clientConfig{region: "eu-west-1"})(t.Context())
			if err != nil {
				t.Fatalf("%s: %v", oc.op, err)
			}
			c := lastCall(t, s)
			if id == "" || id != c.RequestID {
				t.Errorf("request id: got %q from the SDK, want %q as recorded", id, c.RequestID)
			}
			want := Call{Service: oc.service, Operation: oc.op, Region: "eu-west-1", RequestID: c.RequestID, Time: testStart, Status: 200}
			checkCall(t, c, want)
			if got, ok := c.Params[oc.param]; oc.param != "" && (!ok || got != oc.paramValue) {
				t.Errorf("Params[%q]: got %q, want %q (params %v)", oc.param, got, oc.paramValue, c.Params)
			}

			// An error: the server fails every call with a fault code.
			s.SetFault(oc.op, Fault{ErrorCode: "AccessDeniedException"})
			_, err = oc.call(t, s, clientConfig{region: "ap-south-1"})(t.Context())
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			c = lastCall(t, s)
			if got := errorRequestID(err); got == "" || got != c.RequestID {
				t.Errorf("error request id: got %q from the SDK, want %q as recorded", got, c.RequestID)
			}
			want = Call{Service: oc.service, Operation: oc.op, Region: "ap-south-1", RequestID: c.RequestID, Time: testStart,
				Status: 400, ErrorCode: "AccessDeniedException"}
			checkCall(t, c, want)

			calls := s.Calls()
			if len(calls) != 2 {
				t.Fatalf("Calls: got %d, want 2", len(calls))
			}
			if calls[0].RequestID == calls[1].RequestID {
				t.Errorf("request ids: got %q twice, want distinct ids", calls[0].RequestID)
			}
			if got := s.CallCount(oc.op); got != 2 {
				t.Errorf("CallCount(%s): got %d, want 2", oc.op, got)
			}
		})
	}
}

// checkCall compares every field of got but Params with want.
func checkCall(t *testing.T, got, want Call) {
	t.Helper()
	got.Params = nil
	if got.Service != want.Service || got.Operation != want.Operation || got.Region != want.Region ||
		got.RequestID != want.RequestID || !got.Time.Equal(want.Time) || got.Status != want.Status ||
		got.ErrorCode != want.ErrorCode {
		t.Errorf("call: got %+v, want %+v", got, want)
	}
}

// TestCallsCopy checks that Calls returns a copy.
func TestCallsCopy(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	addOpInstances(s, DefaultRegion)
	if _, err := opCases(t)[1].call(t, s, clientConfig{})(t.Context()); err != nil {
		t.Fatalf("GetInstance: %v", err)
	}
	calls := s.Calls()
	calls[0].Operation = "changed"
	calls[0].Params["instanceName"] = "changed"
	c := s.Calls()[0]
	if c.Operation != "GetInstance" || c.Params["instanceName"] != opLightsailName {
		t.Errorf("call after changing the copy: got %+v, want operation GetInstance and instanceName %s", c, opLightsailName)
	}
}

// TestNotAnAPI checks the answers to requests that address no operation.
func TestNotAnAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	tests := []struct {
		name       string
		rr         rawRequest
		wantStatus int
		wantCode   string
	}{
		{"unknown lightsail operation", rawRequest{ServiceLightsail, DefaultRegion, lightsailTargetPrefix + "DeleteInstance", `{}`}, 400, "UnknownOperationException"},
		{"unknown target", rawRequest{ServiceLightsail, DefaultRegion, "DynamoDB_20120810.GetItem", `{}`}, 400, "UnknownOperationException"},
		{"unknown ec2 action", rawRequest{ServiceEC2, DefaultRegion, "", "Action=TerminateInstances&Version=" + ec2Version}, 400, "InvalidAction"},
		{"wrong ec2 version", rawRequest{ServiceEC2, DefaultRegion, "", "Action=DescribeInstances&Version=2014-01-01"}, 400, "InvalidParameterValue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newSignedRequest(t, s, tc.rr, s.AccessKeyID(), s.SecretAccessKey())
			status, code := doRaw(t, req)
			if status != tc.wantStatus || code != tc.wantCode {
				t.Errorf("answer: got %d %s, want %d %s", status, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}
