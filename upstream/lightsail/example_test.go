package lightsail_test

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/lightsail"
)

func ExampleNew() {
	ctx := context.Background()
	awsCfg, err := awsutil.LoadConfig(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := lightsail.New(awsCfg, lightsail.Config{
		Regions:     []string{"us-east-1"},
		CallTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	targets, err := p.Resolve(ctx, upstream.Query{Name: "web-1"})
	if err != nil || len(targets) != 1 {
		fmt.Println(upstream.PublicMessage(err))
		return
	}
	creds, err := p.Credentials(ctx, targets[0], "ubuntu")
	if err != nil {
		fmt.Println(upstream.PublicMessage(err)) // e.g. "this Lightsail instance admits only ec2-user"
		return
	}
	fmt.Println("dial", creds.Addr, "as", creds.User)
}
