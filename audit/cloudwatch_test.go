package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"bastion/internal/awsfake"
)

func entries(n, size int, step time.Duration) []cwEntry {
	out := make([]cwEntry, n)
	for i := range out {
		out[i] = cwEntry{id: uint64(i + 1), ts: int64(time.Duration(i) * step / time.Millisecond), msg: strings.Repeat("x", size)}
	}
	return out
}

// TestCloudWatchBatchLimits: a batch never breaks a PutLogEvents limit,
// and takes everything up to it.
func TestCloudWatchBatchLimits(t *testing.T) {
	tests := []struct {
		name string
		buf  []cwEntry
		want int
	}{
		{"empty", nil, 0},
		{"one", entries(1, 10, 0), 1},
		{"10,000 events at most", entries(10001, 1, 0), 10000},
		// 4 × (262,118 + 26) is exactly 1,048,576.
		{"bytes with 26 per event, up to the limit", entries(4, cwMaxMessage, 0), 4},
		{"bytes with 26 per event, over the limit", append(entries(4, cwMaxMessage, 0), cwEntry{id: 5, msg: "y"}), 4},
		{"bytes: 1,048,576 bytes of 1-byte messages is 38,836 events, cut at 10,000", entries(12000, 1, 0), 10000},
		{"24 hours at most", entries(4, 1, 12*time.Hour), 3},
		{"24 hours and a millisecond", append(entries(1, 1, 0), cwEntry{id: 2, ts: int64(24*time.Hour/time.Millisecond) + 1, msg: "z"}), 1},
	}
	for _, tc := range tests {
		if got := batchLen(tc.buf); got != tc.want {
			t.Errorf("%s: batchLen got %d, want %d", tc.name, got, tc.want)
		}
	}
	// Whatever the mix, a batch of a big buffer keeps within the limits.
	var mixed []cwEntry
	for i := range 30000 {
		mixed = append(mixed, cwEntry{id: uint64(i + 1), ts: int64(i) * 1000, msg: strings.Repeat("m", 1+(i*7919)%3000)})
	}
	for len(mixed) > 0 {
		n := batchLen(mixed)
		size := 0
		for _, e := range mixed[:n] {
			size += e.size()
		}
		if n < 1 || n > cwMaxBatchEvents || size > cwMaxBatchBytes || mixed[n-1].ts-mixed[0].ts > 24*3600*1000 {
			t.Fatalf("batch of %d events, %d bytes, span %d ms: over a limit", n, size, mixed[n-1].ts-mixed[0].ts)
		}
		mixed = mixed[n:]
	}
}

// TestCloudWatchBufferBounded: the buffer keeps the newest lines within
// both bounds, counts what it drops, and keeps timestamps from going back.
func TestCloudWatchBufferBounded(t *testing.T) {
	c := &CloudWatch{BufferEvents: 5, BufferBytes: 1 << 20, FailOpen: true}
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for i := range 8 {
		// Every other line's time goes back a minute.
		ts := t0.Add(time.Duration(i) * time.Second)
		if i%2 == 1 {
			ts = ts.Add(-time.Minute)
		}
		c.WriteLine([]byte{byte('a' + i)}, ts)
	}
	if d, _ := c.Dropped(); d != 3 || c.Buffered() != 5 {
		t.Fatalf("dropped %d, buffered %d; want 3 and 5", d, c.Buffered())
	}
	var msgs string
	for i, e := range c.buf {
		msgs += e.msg
		if i > 0 && e.ts < c.buf[i-1].ts {
			t.Errorf("entry %d: timestamp %d before %d", i, e.ts, c.buf[i-1].ts)
		}
	}
	if msgs != "defgh" {
		t.Errorf("buffer holds %q, want the newest five, defgh", msgs)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err with FailOpen: got %v, want nil", err)
	}

	b := &CloudWatch{BufferEvents: 100, BufferBytes: 100}
	for range 5 {
		b.WriteLine(bytes.Repeat([]byte("x"), 40), t0)
	}
	if d, _ := b.Dropped(); d != 3 || b.Buffered() != 2 {
		t.Fatalf("byte bound: dropped %d, buffered %d; want 3 and 2", d, b.Buffered())
	}
	if err := b.Err(); !errors.Is(err, ErrCloudWatchDown) {
		t.Errorf("Err after a drop, failing closed: got %v, want ErrCloudWatchDown", err)
	}
}

// TestCloudWatchClipsOversized: a line longer than one event may be is cut
// at a rune boundary and counted; the Logger's lines never are.
func TestCloudWatchClipsOversized(t *testing.T) {
	if MaxEventLen > cwMaxMessage {
		t.Fatalf("MaxEventLen %d is over the per-event limit %d: audit lines would be clipped", MaxEventLen, cwMaxMessage)
	}
	c := &CloudWatch{}
	c.WriteLine([]byte(strings.Repeat("é", 200<<10)), time.Now())
	if _, clipped := c.Dropped(); clipped != 1 {
		t.Fatalf("clipped %d, want 1", clipped)
	}
	m := c.buf[0].msg
	if len(m) > cwMaxMessage || len(m) < cwMaxMessage-1 || !utf8.ValidString(m) {
		t.Errorf("clipped message: %d bytes, valid UTF-8 %v; want %d or one less, valid", len(m), utf8.ValidString(m), cwMaxMessage)
	}
}

// flakyLogs is a CloudWatchAPI whose PutLogEvents fails while fail is set.
type flakyLogs struct {
	fail    atomic.Bool
	mu      sync.Mutex
	got     []string
	creates int
}

func (f *flakyLogs) PutLogEvents(ctx context.Context, in *cloudwatchlogs.PutLogEventsInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error) {
	if f.fail.Load() {
		return nil, errors.New("service unavailable")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range in.LogEvents {
		f.got = append(f.got, aws.ToString(e.Message))
	}
	return &cloudwatchlogs.PutLogEventsOutput{}, nil
}

func (f *flakyLogs) CreateLogStream(ctx context.Context, in *cloudwatchlogs.CreateLogStreamInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	return &cloudwatchlogs.CreateLogStreamOutput{}, nil
}

func (f *flakyLogs) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloudWatchFailClosed: failing closed, Emit reports the sink down
// after repeated failed deliveries (the line is in the file all the same),
// and again nil once a batch is delivered; the lines arrive in order.
func TestCloudWatchFailClosed(t *testing.T) {
	api := &flakyLogs{}
	api.fail.Store(true)
	cw := &CloudWatch{Client: api, LogGroup: "g", LogStream: "s", FlushInterval: 20 * time.Millisecond}
	cw.Start()
	var file bytes.Buffer
	l := NewLoggerWith(&file, Options{Sink: cw})
	if err := l.Emit(Event{Type: TypeConfigReloaded}); err != nil {
		t.Fatalf("first Emit: %v", err)
	}
	waitUntil(t, "the sink to report itself down", func() bool { return cw.Err() != nil })
	err := l.Emit(Event{Type: TypeConfigReloaded})
	if !errors.Is(err, ErrCloudWatchDown) || !strings.Contains(err.Error(), "service unavailable") {
		t.Fatalf("Emit while CloudWatch fails: got %v, want ErrCloudWatchDown with the cause", err)
	}
	api.fail.Store(false)
	waitUntil(t, "delivery again", func() bool { return cw.Err() == nil && cw.Buffered() == 0 })
	if err := l.Emit(Event{Type: TypeConfigReloaded}); err != nil {
		t.Fatalf("Emit once CloudWatch answers: %v", err)
	}
	if err := cw.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := strings.Split(strings.TrimSuffix(file.String(), "\n"), "\n")
	if got := api.lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("delivered %q, want the file's lines %q", got, want)
	}
	if api.creates != 1 {
		t.Errorf("CreateLogStream calls: %d, want 1", api.creates)
	}
}

// countingMetrics is a CloudWatchMetrics.
type countingMetrics struct {
	sent, dropped, failures atomic.Int64
	maxBuffered             atomic.Int64
}

func (m *countingMetrics) CloudWatchSent(n int)    { m.sent.Add(int64(n)) }
func (m *countingMetrics) CloudWatchDropped(n int) { m.dropped.Add(int64(n)) }
func (m *countingMetrics) CloudWatchFailure()      { m.failures.Add(1) }
func (m *countingMetrics) CloudWatchBuffered(n int) {
	for {
		old := m.maxBuffered.Load()
		if int64(n) <= old || m.maxBuffered.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

// TestCloudWatchOutageBounded: 10,000 events while CloudWatch Logs (the
// fake, through the real SDK client) is down, failing open: the buffer stays
// within its bound, the oldest events are dropped and counted, and once the
// fake is back the newest arrive in order, seq continuous, ending with the
// last one.
func TestCloudWatchOutageBounded(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	const region, group, stream = "us-east-1", "/bastion/audit", "replica-1"
	fake.CreateLogGroup(region, group)
	fake.SetFault("PutLogEvents", awsfake.Fault{ErrorCode: "ServiceUnavailableException"})
	client := cloudwatchlogs.New(cloudwatchlogs.Options{
		Region: region, BaseEndpoint: aws.String(fake.URL()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(fake.AccessKeyID(), fake.SecretAccessKey(), ""),
	})
	m := &countingMetrics{}
	const bound = 1000
	cw := &CloudWatch{Client: client, LogGroup: group, LogStream: stream, FailOpen: true,
		FlushInterval: 20 * time.Millisecond, BufferEvents: bound, CallTimeout: 5 * time.Second, Metrics: m}
	cw.Start()
	var file bytes.Buffer
	l := NewLoggerWith(&file, Options{Sink: cw})
	for i := range 10000 {
		if err := l.Emit(Event{Type: TypeSessionStart, SessionID: "s", Channel: i + 1}); err != nil {
			t.Fatalf("Emit %d, failing open: %v", i, err)
		}
		if n := cw.Buffered(); n > bound {
			t.Fatalf("after %d events the buffer holds %d, over its bound %d", i+1, n, bound)
		}
	}
	if m.maxBuffered.Load() > bound {
		t.Fatalf("buffered gauge reached %d, over %d", m.maxBuffered.Load(), bound)
	}
	dropped, _ := cw.Dropped()
	if dropped != 10000-bound || m.dropped.Load() != dropped || m.failures.Load() == 0 {
		t.Fatalf("dropped %d (metric %d), failures %d; want %d dropped and some failures", dropped, m.dropped.Load(), m.failures.Load(), 10000-bound)
	}
	if n := len(fake.LogEvents(region, group, stream)); n != 0 {
		t.Fatalf("%d events reached the stream while PutLogEvents failed", n)
	}

	fake.ClearFaults()
	waitUntil(t, "the buffer to drain", func() bool { return cw.Buffered() == 0 })
	if err := cw.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := fake.LogEvents(region, group, stream)
	if len(got) != bound || m.sent.Load() != bound {
		t.Fatalf("the stream holds %d events (sent metric %d), want the newest %d", len(got), m.sent.Load(), bound)
	}
	var fileLines []string
	sc := bufio.NewScanner(&file)
	for sc.Scan() {
		fileLines = append(fileLines, sc.Text())
	}
	tail := fileLines[len(fileLines)-bound:]
	for i, e := range got {
		if e.Message != tail[i] {
			t.Fatalf("event %d is not the file's line %d", i, len(fileLines)-bound+i+1)
		}
		var ev Event
		if err := json.Unmarshal([]byte(e.Message), &ev); err != nil || ev.Seq != int64(10000-bound+i+1) {
			t.Fatalf("event %d: seq %d (%v), want %d", i, ev.Seq, err, 10000-bound+i+1)
		}
	}
}

// poisonLogs refuses, as invalid, every batch holding the message "poison".
type poisonLogs struct{ flakyLogs }

func (p *poisonLogs) PutLogEvents(ctx context.Context, in *cloudwatchlogs.PutLogEventsInput, o ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error) {
	for _, e := range in.LogEvents {
		if aws.ToString(e.Message) == "poison" {
			return nil, &types.InvalidParameterException{Message: aws.String("refused")}
		}
	}
	return p.flakyLogs.PutLogEvents(ctx, in, o...)
}

// TestCloudWatchGivesUpInvalidBatch: a batch CloudWatch keeps refusing as
// invalid is dropped (counted) after a few attempts, and the lines after it
// are delivered.
func TestCloudWatchGivesUpInvalidBatch(t *testing.T) {
	api := &poisonLogs{}
	cw := &CloudWatch{Client: api, LogGroup: "g", LogStream: "s", FlushInterval: 20 * time.Millisecond}
	cw.WriteLine([]byte("poison"), time.Now())
	cw.Start()
	waitUntil(t, "the refused batch to be dropped", func() bool { d, _ := cw.Dropped(); return d == 1 })
	cw.WriteLine([]byte("fine"), time.Now())
	waitUntil(t, "the next line delivered", func() bool { return len(api.lines()) == 1 })
	if err := cw.Close(context.Background()); err != nil || api.lines()[0] != "fine" || cw.Err() != nil {
		t.Fatalf("Close %v, delivered %q, Err %v; want nil, [fine], nil", err, api.lines(), cw.Err())
	}
}

// TestCloudWatchTransientAndDeletedStream, against the fake through the
// real SDK client: two failed calls are retried without the sink ever
// reporting itself down, and a stream deleted under the sink is created
// again for the next batch.
func TestCloudWatchTransientAndDeletedStream(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	const region, group, stream = "us-east-1", "/bastion/audit", "replica-1"
	fake.CreateLogGroup(region, group)
	fake.SetFault("PutLogEvents", awsfake.Fault{ServerErrorFirst: 2})
	client := cloudwatchlogs.New(cloudwatchlogs.Options{
		Region: region, BaseEndpoint: aws.String(fake.URL()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(fake.AccessKeyID(), fake.SecretAccessKey(), ""),
	})
	m := &countingMetrics{}
	cw := &CloudWatch{Client: client, LogGroup: group, LogStream: stream, FlushInterval: 20 * time.Millisecond, Metrics: m}
	cw.Start()
	var file bytes.Buffer
	l := NewLoggerWith(&file, Options{Sink: cw})
	for i := range 5 {
		if err := l.Emit(Event{Type: TypeSessionStart, Channel: i + 1}); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
	}
	waitUntil(t, "five events in the stream", func() bool {
		if err := cw.Err(); err != nil {
			t.Fatalf("two failed calls made the sink report itself down: %v", err)
		}
		return len(fake.LogEvents(region, group, stream)) == 5
	})
	if m.failures.Load() != 2 {
		t.Errorf("failures: got %d, want 2", m.failures.Load())
	}

	fake.DeleteLogStream(region, group, stream)
	if err := l.Emit(Event{Type: TypeSessionStart, Channel: 6}); err != nil {
		t.Fatalf("Emit after the stream was deleted: %v", err)
	}
	waitUntil(t, "the event in the stream created again", func() bool { return len(fake.LogEvents(region, group, stream)) == 1 })
	if err := cw.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(file.String()), "\n")
	if got := fake.LogEvents(region, group, stream)[0].Message; got != lines[5] {
		t.Errorf("the stream created again holds %q, want the sixth line %q", got, lines[5])
	}
	if n := fake.CallCount("CreateLogStream"); n != 2 {
		t.Errorf("CreateLogStream calls: got %d, want 2 (at start, after the deletion)", n)
	}
}

// hangingLogs never answers PutLogEvents: each call waits for its context.
type hangingLogs struct {
	flakyLogs
	calls atomic.Int64
}

func (h *hangingLogs) PutLogEvents(ctx context.Context, _ *cloudwatchlogs.PutLogEventsInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCloudWatchCloseBounded: Close returns by its context's deadline even
// with a call in flight that would outlast it (CallTimeout an hour), and
// says how many events were not delivered.
func TestCloudWatchCloseBounded(t *testing.T) {
	api := &hangingLogs{}
	cw := &CloudWatch{Client: api, LogGroup: "g", LogStream: "s", FlushInterval: 10 * time.Millisecond, CallTimeout: time.Hour, FailOpen: true}
	cw.Start()
	cw.WriteLine([]byte("a"), time.Now())
	cw.WriteLine([]byte("b"), time.Now())
	waitUntil(t, "a call in flight", func() bool { return api.calls.Load() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := cw.Close(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s with a hanging call; want about its 300ms deadline", d)
	}
	if err == nil || !strings.Contains(err.Error(), "2 events not delivered") {
		t.Fatalf("Close: got %v, want 2 events not delivered", err)
	}
	if d, _ := cw.Dropped(); d != 2 {
		t.Errorf("dropped: got %d, want 2", d)
	}
}
