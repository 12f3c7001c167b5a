package awsutil_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/smithy-go"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

func ExampleToError() {
	// An error as the SDK returns it for an AccessDeniedException answer.
	sdkErr := &smithy.OperationError{
		ServiceID:     "Lightsail",
		OperationName: "GetInstanceAccessDetails",
		Err:           &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized"},
	}
	err := awsutil.ToError(awsutil.ServiceLightsail, "GetInstanceAccessDetails", 10*time.Second, sdkErr)
	fmt.Println(upstream.PublicMessage(err))

	err = awsutil.ToError(awsutil.ServiceEC2, "DescribeInstances", 10*time.Second, fmt.Errorf("sending: %w", context.DeadlineExceeded))
	fmt.Println(upstream.PublicMessage(err))
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// Lightsail GetInstanceAccessDetails failed: AccessDeniedException
	// EC2 DescribeInstances timed out after 10s
	// true
}
