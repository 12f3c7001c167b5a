package awsfake

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
)

// TestGetConsoleOutput drives GetConsoleOutput with the real SDK client:
// the output comes back base64-encoded, as EC2 sends it; an instance that
// printed nothing has no output; unknown and malformed ids get EC2's
// error codes.
func TestGetConsoleOutput(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	const console = "[   0.0] Linux\n-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA root@x\n-----END SSH HOST KEY KEYS-----\n"
	s.AddEC2Instance(EC2Instance{ID: "i-0000000000000000c", PrivateIP: "10.0.0.3", ConsoleOutput: console})
	s.AddEC2Instance(EC2Instance{ID: "i-0000000000000000d", PrivateIP: "10.0.0.4"})
	c := ec2Client(t, s, clientConfig{})

	out, err := c.GetConsoleOutput(t.Context(), &ec2.GetConsoleOutputInput{InstanceId: aws.String("i-0000000000000000c"), Latest: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil || string(got) != console || aws.ToString(out.InstanceId) != "i-0000000000000000c" || out.Timestamp == nil {
		t.Errorf("got output %q (%v), id %q, timestamp %v", got, err, aws.ToString(out.InstanceId), out.Timestamp)
	}

	out, err = c.GetConsoleOutput(t.Context(), &ec2.GetConsoleOutputInput{InstanceId: aws.String("i-0000000000000000d")})
	if err != nil || out.Output != nil {
		t.Errorf("silent instance: got output %v, %v; want none", out.Output, err)
	}

	for id, code := range map[string]string{"i-0000000000000000e": "InvalidInstanceID.NotFound", "web-1": "InvalidInstanceID.Malformed"} {
		_, err := c.GetConsoleOutput(t.Context(), &ec2.GetConsoleOutputInput{InstanceId: aws.String(id)})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != code {
			t.Errorf("GetConsoleOutput(%s): got %v, want %s", id, err, code)
		}
	}
}
