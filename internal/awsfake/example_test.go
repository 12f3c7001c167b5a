package awsfake_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/smithy-go"

	"bastion/internal/awsfake"
)

// Example points the real Lightsail client at the fake, then makes the fake
// deny access.
func Example() {
	ctx := context.Background()
	s, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	s.AddLightsailInstance(awsfake.LightsailInstance{Name: "web-1", PublicIP: "203.0.113.10"})

	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), "")),
		config.WithRetryMaxAttempts(1),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		log.Fatal(err)
	}
	client := lightsail.NewFromConfig(cfg, func(o *lightsail.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	in := &lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("web-1")}
	out, err := client.GetInstanceAccessDetails(ctx, in)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(aws.ToString(out.AccessDetails.Username), aws.ToString(out.AccessDetails.IpAddress))

	s.SetFault("GetInstanceAccessDetails", awsfake.Fault{ErrorCode: "AccessDeniedException"})
	_, err = client.GetInstanceAccessDetails(ctx, in)
	var ae smithy.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.ErrorCode())
	}
	for _, c := range s.Calls() {
		fmt.Printf("%s %s %d %q\n", c.Operation, c.Region, c.Status, c.ErrorCode)
	}
	// Output:
	// ec2-user 203.0.113.10
	// AccessDeniedException
	// GetInstanceAccessDetails us-east-1 200 ""
	// GetInstanceAccessDetails us-east-1 400 "AccessDeniedException"
}
