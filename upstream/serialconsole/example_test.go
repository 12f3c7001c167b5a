package serialconsole_test

import (
	"context"
	"fmt"

	"bastion/upstream"
	"bastion/upstream/serialconsole"
)

// noInstances finds nothing; the example only asks about endpoints.
type noInstances struct{}

func (noInstances) Resolve(context.Context, upstream.Query) ([]upstream.Target, error) {
	return nil, nil
}

func (noInstances) List(context.Context) ([]upstream.Target, error) { return nil, nil }

// The endpoint and host key fingerprints of a region: AWS's published ones
// by default, the config's where it names them.
func ExampleProvider_Endpoint() {
	p, err := serialconsole.New(noInstances{}, map[string]serialconsole.API{"us-east-1": nil}, serialconsole.Config{
		HostKeys: map[string][]string{"eu-west-1": {"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
	})
	if err != nil {
		panic(err)
	}
	for _, region := range []string{"us-east-1", "af-south-1", "eu-west-1"} {
		fps, source := p.Fingerprints(region)
		fmt.Println(p.Endpoint(region), fps, source)
	}
	// Output:
	// serial-console.ec2-instance-connect.us-east-1.aws:22 [SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw] aws_published
	// ec2-serial-console.af-south-1.api.aws:22 [SHA256:RMWWZ2fVePeJUqzjO5jL2KIgXsczoHlz21Ed00biiWI] aws_published
	// serial-console.ec2-instance-connect.eu-west-1.aws:22 [SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA] config
}
