package awsfake

import (
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// ec2Fixture is the set of EC2 instances the DescribeInstances tests use.
var ec2Fixture = []EC2Instance{
	{ID: "i-0000000000000000a", PrivateIP: "10.0.0.10", PublicIP: "203.0.113.10", Tags: map[string]string{"Name": "web-1", "env": "prod"}},
	{ID: "i-0000000000000000b", PrivateIP: "10.0.0.11", Tags: map[string]string{"Name": "web-2"}, AvailabilityZone: "us-east-1b"},
	{ID: "i-0000000000000000c", PrivateIP: "10.0.0.12", Tags: map[string]string{"Name": "web-1"}, State: "stopped"},
	{ID: "i-0000000d", PrivateIP: "10.0.0.13", Tags: map[string]string{"Name": "db-1"}},
	{ID: "i-0000000000000000e", Region: "eu-west-1", PrivateIP: "10.1.0.10", Tags: map[string]string{"Name": "web-1"}},
}

// instanceIDs returns the ids of the instances in out, in order.
func instanceIDs(out *ec2.DescribeInstancesOutput) []string {
	var ids []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	return ids
}

func TestDescribeInstances(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	for _, in := range ec2Fixture {
		s.AddEC2Instance(in)
	}
	filter := func(name string, values ...string) types.Filter {
		return types.Filter{Name: aws.String(name), Values: values}
	}
	tests := []struct {
		name    string
		region  string
		input   ec2.DescribeInstancesInput
		wantIDs []string
	}{
		{
			name:    "by id",
			input:   ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000a"}},
			wantIDs: []string{"i-0000000000000000a"},
		},
		{
			name:    "by two ids",
			input:   ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000d", "i-0000000000000000b"}},
			wantIDs: []string{"i-0000000000000000b", "i-0000000d"},
		},
		{
			name:    "by id stopped",
			input:   ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000c"}},
			wantIDs: []string{"i-0000000000000000c"},
		},
		{
			name: "by name tag running",
			input: ec2.DescribeInstancesInput{Filters: []types.Filter{
				filter("tag:Name", "web-1"),
				filter("instance-state-name", "running"),
			}},
			wantIDs: []string{"i-0000000000000000a"},
		},
		{
			name:    "by name tag any state",
			input:   ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag:Name", "web-1")}},
			wantIDs: []string{"i-0000000000000000a", "i-0000000000000000c"},
		},
		{
			name:    "by name tag in another region",
			region:  "eu-west-1",
			input:   ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag:Name", "web-1"), filter("instance-state-name", "running")}},
			wantIDs: []string{"i-0000000000000000e"},
		},
		{
			name:    "wildcard and two values",
			input:   ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag:Name", "web-*", "db-?"), filter("instance-state-name", "running")}},
			wantIDs: []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000d"},
		},
		{
			name:    "by private ip",
			input:   ec2.DescribeInstancesInput{Filters: []types.Filter{filter("private-ip-address", "10.0.0.11")}},
			wantIDs: []string{"i-0000000000000000b"},
		},
		{
			name:    "no match",
			input:   ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag:Name", "nope")}},
			wantIDs: nil,
		},
		{
			name:    "all in region",
			input:   ec2.DescribeInstancesInput{},
			wantIDs: []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-0000000d"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := ec2Client(t, s, clientConfig{region: tc.region})
			out, err := client.DescribeInstances(t.Context(), &tc.input)
			if err != nil {
				t.Fatalf("DescribeInstances: %v", err)
			}
			if got := instanceIDs(out); !slices.Equal(got, tc.wantIDs) {
				t.Errorf("instance ids: got %v, want %v", got, tc.wantIDs)
			}
		})
	}
}

// TestDescribeInstancesFields checks every field the bastion reads.
func TestDescribeInstancesFields(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	for _, in := range ec2Fixture {
		s.AddEC2Instance(in)
	}
	client := ec2Client(t, s, clientConfig{})
	for _, want := range ec2Fixture {
		if want.Region != "" {
			continue
		}
		t.Run(want.ID, func(t *testing.T) {
			t.Parallel()
			out, err := client.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{want.ID}})
			if err != nil {
				t.Fatalf("DescribeInstances: %v", err)
			}
			if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
				t.Fatalf("got %d reservations, want 1 with 1 instance", len(out.Reservations))
			}
			in := out.Reservations[0].Instances[0]
			wantState, wantZone := want.State, want.AvailabilityZone
			if wantState == "" {
				wantState = "running"
			}
			if wantZone == "" {
				wantZone = "us-east-1a"
			}
			checks := []struct {
				field, got, want string
			}{
				{"InstanceId", aws.ToString(in.InstanceId), want.ID},
				{"PrivateIpAddress", aws.ToString(in.PrivateIpAddress), want.PrivateIP},
				{"PublicIpAddress", aws.ToString(in.PublicIpAddress), want.PublicIP},
				{"State.Name", string(in.State.Name), wantState},
				{"State.Code", fmt.Sprint(aws.ToInt32(in.State.Code)), fmt.Sprint(ec2StateCodes[wantState])},
				{"Placement.AvailabilityZone", aws.ToString(in.Placement.AvailabilityZone), wantZone},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
				}
			}
			gotTags := make(map[string]string)
			for _, tag := range in.Tags {
				gotTags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			if fmt.Sprint(gotTags) != fmt.Sprint(want.Tags) {
				t.Errorf("tags: got %v, want %v", gotTags, want.Tags)
			}
			if in.LaunchTime == nil {
				t.Error("LaunchTime: got nil, want a time")
			}
		})
	}
}

func TestDescribeInstancesPaginated(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	var want []string
	for i := range 12 {
		id := fmt.Sprintf("i-%017x", i+1)
		want = append(want, id)
		s.AddEC2Instance(EC2Instance{ID: id, PrivateIP: fmt.Sprintf("10.0.0.%d", i+1)})
	}
	client := ec2Client(t, s, clientConfig{})
	p := ec2.NewDescribeInstancesPaginator(client, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	var got []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("NextPage: %v", err)
		}
		pages++
		got = append(got, instanceIDs(out)...)
	}
	if !slices.Equal(got, want) {
		t.Errorf("instance ids: got %v, want %v", got, want)
	}
	if pages != 3 {
		t.Errorf("pages: got %d, want 3", pages)
	}
}

func TestDescribeInstancesErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	for _, in := range ec2Fixture {
		s.AddEC2Instance(in)
	}
	tests := []struct {
		name     string
		region   string
		input    ec2.DescribeInstancesInput
		wantCode string
	}{
		{
			name:     "unknown id",
			input:    ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}},
			wantCode: "InvalidInstanceID.NotFound",
		},
		{
			name:     "one of two ids unknown",
			input:    ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000a", "i-0123456789abcdef0"}},
			wantCode: "InvalidInstanceID.NotFound",
		},
		{
			name:     "id in another region",
			region:   "eu-west-1",
			input:    ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000a"}},
			wantCode: "InvalidInstanceID.NotFound",
		},
		{
			name:     "malformed id",
			input:    ec2.DescribeInstancesInput{InstanceIds: []string{"web-1"}},
			wantCode: "InvalidInstanceID.Malformed",
		},
		{
			name:     "unknown filter",
			input:    ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("flavour"), Values: []string{"x"}}}},
			wantCode: "InvalidParameterValue",
		},
		{
			name:     "max results with ids",
			input:    ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000a"}, MaxResults: aws.Int32(5)},
			wantCode: "InvalidParameterCombination",
		},
		{
			name:     "dry run",
			input:    ec2.DescribeInstancesInput{DryRun: aws.Bool(true)},
			wantCode: "DryRunOperation",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := ec2Client(t, s, clientConfig{region: tc.region})
			_, err := client.DescribeInstances(t.Context(), &tc.input)
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if got := errorCode(err); got != tc.wantCode {
				t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
			}
		})
	}
}
