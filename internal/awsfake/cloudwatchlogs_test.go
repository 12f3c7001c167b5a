package awsfake

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

func logsClient(t *testing.T, s *Server, cc clientConfig, fns ...func(*cloudwatchlogs.Options)) *cloudwatchlogs.Client {
	t.Helper()
	fns = append([]func(*cloudwatchlogs.Options){func(o *cloudwatchlogs.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return cloudwatchlogs.NewFromConfig(awsConfig(t, s, cc), fns...)
}

func logEvents(ts int64, msgs ...string) []types.InputLogEvent {
	out := make([]types.InputLogEvent, len(msgs))
	for i, m := range msgs {
		out[i] = types.InputLogEvent{Message: aws.String(m), Timestamp: aws.Int64(ts)}
	}
	return out
}

// TestCloudWatchLogs drives the fake's CloudWatch Logs with the real SDK
// client: streams are created once, events come back in order through
// GetLogEvents' paging, and the errors are CloudWatch's own.
func TestCloudWatchLogs(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	c := logsClient(t, s, clientConfig{})
	ctx := t.Context()
	g, st := aws.String("/bastion/audit"), aws.String("replica-1")
	now := clock.Now().UnixMilli()

	_, err := c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: g, LogStreamName: st})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "log group does not exist") {
		t.Fatalf("CreateLogStream in a missing group: got %v, want ResourceNotFoundException", err)
	}
	if _, err := c.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: g}); err != nil {
		t.Fatalf("CreateLogGroup: %v", err)
	}
	_, err = c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st, LogEvents: logEvents(now, "x")})
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "log stream does not exist") {
		t.Fatalf("PutLogEvents to a missing stream: got %v, want ResourceNotFoundException", err)
	}
	if _, err := c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: g, LogStreamName: st}); err != nil {
		t.Fatalf("CreateLogStream: %v", err)
	}
	_, err = c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: g, LogStreamName: st})
	var exists *types.ResourceAlreadyExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("CreateLogStream again: got %v, want ResourceAlreadyExistsException", err)
	}

	var want []string
	for i := range 120 {
		want = append(want, strings.Repeat("é", i%7)+"line "+string(rune('a'+i%26)))
	}
	for i := 0; i < len(want); i += 40 {
		out, err := c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st,
			LogEvents: logEvents(now+int64(i), want[i:i+40]...)})
		if err != nil || out.RejectedLogEventsInfo != nil {
			t.Fatalf("PutLogEvents: %v %+v", err, out)
		}
	}
	var got []string
	in := &cloudwatchlogs.GetLogEventsInput{LogGroupName: g, LogStreamName: st, StartFromHead: aws.Bool(true), Limit: aws.Int32(25)}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("GetLogEvents does not come to an end")
		}
		out, err := c.GetLogEvents(ctx, in)
		if err != nil {
			t.Fatalf("GetLogEvents: %v", err)
		}
		for _, e := range out.Events {
			got = append(got, aws.ToString(e.Message))
		}
		if in.NextToken != nil && aws.ToString(out.NextForwardToken) == aws.ToString(in.NextToken) {
			break
		}
		in.NextToken = out.NextForwardToken
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("GetLogEvents: got %d events, want the %d put, in order", len(got), len(want))
	}
	ds, err := c.DescribeLogStreams(ctx, &cloudwatchlogs.DescribeLogStreamsInput{LogGroupName: g, LogStreamNamePrefix: aws.String("replica")})
	if err != nil || len(ds.LogStreams) != 1 || aws.ToString(ds.LogStreams[0].LogStreamName) != "replica-1" {
		t.Fatalf("DescribeLogStreams: %v %+v", err, ds)
	}

	big := strings.Repeat("x", 256<<10-26)
	invalid := []struct {
		name   string
		events []types.InputLogEvent
		msg    string
	}{
		{"out of order", append(logEvents(now+5, "b"), logEvents(now+4, "a")...), "chronological order"},
		{"over 1 MiB with the 26 bytes per event", logEvents(now, big, big, big, big, "y"), "Upload too large"},
		{"over 10,000 events", logEvents(now, strings.Split(strings.Repeat("e,", 10001), ",")[:10001]...), "length between 1 and 10000"},
		{"over 24 hours", append(logEvents(now-25*3600*1000, "old"), logEvents(now, "new")...), "24 hours"},
	}
	for _, tc := range invalid {
		_, err := c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st, LogEvents: tc.events})
		var ip *types.InvalidParameterException
		if !errors.As(err, &ip) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want InvalidParameterException %q", tc.name, err, tc.msg)
		}
	}
	// Exactly at the byte limit is fine.
	if _, err := c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st, LogEvents: logEvents(now+200, big, big, big, big)}); err != nil {
		t.Errorf("a batch of exactly 1,048,576 bytes: %v", err)
	}
	// Too far from the clock: accepted, not stored, reported.
	out, err := c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st,
		LogEvents: append(logEvents(now-15*24*3600*1000+1, "too old"), logEvents(now-15*24*3600*1000+2, "too old too")...)})
	if err != nil || out.RejectedLogEventsInfo == nil || aws.ToInt32(out.RejectedLogEventsInfo.TooOldLogEventEndIndex) != 2 {
		t.Errorf("events fifteen days old: got %v %+v, want tooOldLogEventEndIndex 2", err, out)
	}
	out, err = c.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st,
		LogEvents: append(logEvents(now+201, "ok"), logEvents(now+3*3600*1000, "too new")...)})
	if err != nil || out.RejectedLogEventsInfo == nil || aws.ToInt32(out.RejectedLogEventsInfo.TooNewLogEventStartIndex) != 1 {
		t.Errorf("an event three hours ahead: got %v %+v, want tooNewLogEventStartIndex 1", err, out)
	}
	if n := len(s.LogEvents(DefaultRegion, "/bastion/audit", "replica-1")); n != 120+4+1 {
		t.Errorf("stored events: got %d, want %d", n, 125)
	}
	// Another region has other groups.
	_, err = logsClient(t, s, clientConfig{region: "eu-west-1"}).PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st, LogEvents: logEvents(now, "x")})
	if !errors.As(err, &nf) {
		t.Errorf("PutLogEvents in another region: got %v, want ResourceNotFoundException", err)
	}
	// The signature is checked, as for every service.
	_, err = logsClient(t, s, clientConfig{secret: "wrong"}).PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: g, LogStreamName: st, LogEvents: logEvents(now, "x")})
	if err == nil || errorStatus(err) != 400 && errorStatus(err) != 403 {
		t.Errorf("a bad signature: got %v, want it refused", err)
	}
}
