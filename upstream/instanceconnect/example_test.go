package instanceconnect_test

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/instanceconnect"
)

func ExampleNew() {
	ctx := context.Background()
	awsCfg, err := awsutil.LoadConfig(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := instanceconnect.New(awsCfg, instanceconnect.Config{
		Regions:    []string{"us-east-1"},
		Address:    instanceconnect.AddressPrivate,
		HostKeys:   "tofu",
		KnownHosts: "/var/lib/bastion/ec2_known_hosts",
		OnHostKeyLearned: func(id string, key ssh.PublicKey) {
			fmt.Println("learned", id, ssh.FingerprintSHA256(key))
		},
		Logger: zap.NewNop(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	targets, err := p.Resolve(ctx, upstream.Query{Name: "i-0123456789abcdef0"})
	if err != nil || len(targets) != 1 {
		fmt.Println(upstream.PublicMessage(err))
		return
	}
	// The pushed key is valid for 60 seconds: dial at once.
	creds, err := p.Credentials(ctx, targets[0], "ec2-user")
	if err != nil {
		fmt.Println(upstream.PublicMessage(err))
		return
	}
	fmt.Println("dial", creds.Addr, "as", creds.User, "before", creds.Expires)
}
