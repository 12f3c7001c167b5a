package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"go.uber.org/zap"
)

// Sink receives every line the Logger writes, after it is in the file, in
// the order of the chain: a second copy of the trail kept elsewhere.
type Sink interface {
	// WriteLine is given one line (without its newline) and the time of
	// its event. It must not block, and must copy line if it keeps it.
	WriteLine(line []byte, t time.Time)
	// Err is why the sink cannot deliver at the moment, or nil. Emit
	// returns it after writing the file, so that audit.on_failure decides
	// what follows, as for a failed write.
	Err() error
}

// PutLogEvents limits (CloudWatch Logs quotas). A batch holds at most
// cwMaxBatchEvents events whose messages, in UTF-8 bytes, plus
// cwEventOverhead bytes each, sum to at most cwMaxBatchBytes; its events are
// in chronological order and span at most cwMaxBatchSpan.
const (
	cwMaxBatchEvents = 10000
	cwMaxBatchBytes  = 1048576
	cwEventOverhead  = 26
	cwMaxBatchSpan   = 24 * time.Hour
	// cwMaxMessage is the longest message the sink sends: 256 KiB minus
	// the overhead, the per-event limit every region has had. An audit
	// line is at most MaxEventLen bytes, far below it, so a Logger's
	// lines are never cut; a longer line given to WriteLine by other code
	// is clipped at a rune boundary, and counted in Clipped.
	cwMaxMessage = 256<<10 - cwEventOverhead
)

// CloudWatch defaults, for the zero values of CloudWatch's fields.
const (
	DefaultCloudWatchFlushInterval = 5 * time.Second
	DefaultCloudWatchBufferEvents  = 10000
	DefaultCloudWatchBufferBytes   = 16 << 20
	DefaultCloudWatchCallTimeout   = 10 * time.Second
)

// cwFailAfter is how many delivery attempts in a row must fail before the
// sink reports itself down (Err); one failed call is retried quietly.
const cwFailAfter = 3

// Backoff between attempts after a failure: doubling from cwBackoffMin up
// to cwBackoffMax.
const (
	cwBackoffMin = 200 * time.Millisecond
	cwBackoffMax = 30 * time.Second
)

// CloudWatchAPI is what the sink calls of the CloudWatch Logs client.
type CloudWatchAPI interface {
	PutLogEvents(ctx context.Context, in *cloudwatchlogs.PutLogEventsInput, opts ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error)
	CreateLogStream(ctx context.Context, in *cloudwatchlogs.CreateLogStreamInput, opts ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error)
}

// CloudWatchMetrics is what the sink counts; *metrics.Metrics has them.
type CloudWatchMetrics interface {
	CloudWatchSent(n int)
	CloudWatchDropped(n int)
	CloudWatchFailure()
	CloudWatchBuffered(n int)
}

// CloudWatch is a Sink that sends each audit line as one event to a
// CloudWatch Logs stream, so that the chain can be verified from there too
// (each event's message is the line's exact bytes). Lines wait in a
// bounded buffer and are sent in batches within the PutLogEvents limits,
// in order, by one goroutine (Start), retried with backoff, each call
// under a deadline. The stream is created if missing; the log group must
// exist.
//
// When the buffer is full the oldest lines are dropped (counted, and
// logged): the file still has them. With FailOpen unset, Err reports the
// sink down from cwFailAfter failed attempts in a row (or a drop) until a
// batch is delivered again, so that new logins are refused as when the
// file cannot be written.
type CloudWatch struct {
	// Client is the CloudWatch Logs client.
	Client CloudWatchAPI
	// LogGroup and LogStream name the stream; the group must exist.
	LogGroup, LogStream string
	// FailOpen keeps Err nil whatever happens: failures are logged and
	// counted only (audit.on_failure: continue).
	FailOpen bool
	// FlushInterval is the longest a line waits before a batch is sent;
	// if 0, DefaultCloudWatchFlushInterval. A batch is sent sooner when
	// a full one is buffered.
	FlushInterval time.Duration
	// BufferEvents and BufferBytes bound the buffer; if 0,
	// DefaultCloudWatchBufferEvents and DefaultCloudWatchBufferBytes.
	BufferEvents int
	BufferBytes  int
	// CallTimeout is the deadline of each call; if 0,
	// DefaultCloudWatchCallTimeout.
	CallTimeout time.Duration
	// Logger, if non-nil, receives failures and drops.
	Logger *zap.Logger
	// Metrics, if non-nil, counts what is sent, dropped and failed.
	Metrics CloudWatchMetrics

	mu sync.Mutex
	// buf holds the lines not yet delivered, oldest first; ids number
	// them in order, so that the sender can take off what it delivered
	// even if drops took some meanwhile.
	buf      []cwEntry
	bufBytes int
	nextID   uint64
	// lastTS is the timestamp of the last line buffered: timestamps
	// never go back, so that lines in chain order are in chronological
	// order too.
	lastTS int64
	// dropped counts lines dropped from the full buffer; Dropped reads it.
	dropped int64
	clipped int64
	// failing counts failed attempts in a row; down is set once it
	// reaches cwFailAfter or a line is dropped, and cleared by a
	// delivered batch. lastErr is the last failure.
	failing int
	down    bool
	lastErr error
	// lastWarn limits failure and drop logs to one of each kind per
	// cwWarnEvery.
	lastWarn [2]time.Time
	wake     chan struct{} // a send when a line arrives or Close begins
	closing  chan struct{} // closed by Close
	flushCtx context.Context
	// runCtx is the context of the calls before Close; it is cancelled
	// when Close's context is done, so that a call in flight does not
	// outlast the flush deadline.
	runCtx    context.Context
	cancelRun context.CancelFunc
	started   bool
	done      chan struct{} // closed when the sender returns
}

// cwWarnEvery is how often, at most, a failure or drop is logged.
const cwWarnEvery = 10 * time.Second

// cwEntry is one buffered line.
type cwEntry struct {
	id  uint64
	ts  int64 // milliseconds since the epoch
	msg string
}

// size is what the entry counts against a batch's byte limit.
func (e cwEntry) size() int { return len(e.msg) + cwEventOverhead }

// ErrCloudWatchDown is the error Err returns (wrapped with the last
// failure) while the sink cannot deliver.
var ErrCloudWatchDown = errors.New("audit events cannot be delivered to CloudWatch Logs")

// WriteLine buffers line for delivery, dropping the oldest lines if the
// buffer is full.
func (c *CloudWatch) WriteLine(line []byte, t time.Time) {
	msg := string(line)
	c.mu.Lock()
	if len(msg) > cwMaxMessage {
		cut := cwMaxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
		c.clipped++
	}
	if msg == "" {
		// CloudWatch refuses empty messages; the Logger writes none.
		c.mu.Unlock()
		return
	}
	ts := max(t.UnixMilli(), c.lastTS)
	c.lastTS = ts
	c.nextID++
	c.buf = append(c.buf, cwEntry{id: c.nextID, ts: ts, msg: msg})
	c.bufBytes += len(msg)
	n := 0
	for len(c.buf) > c.bufferEvents() || (c.bufBytes > c.bufferBytes() && len(c.buf) > 1) {
		c.bufBytes -= len(c.buf[0].msg)
		c.buf[0] = cwEntry{}
		c.buf = c.buf[1:]
		n++
	}
	if n > 0 {
		c.dropped += int64(n)
		if !c.FailOpen {
			c.down = true
		}
	}
	buffered, dropped := len(c.buf), c.dropped
	warn := n > 0 && c.shouldWarn(warnDrop)
	c.mu.Unlock()
	if n > 0 {
		c.metricDropped(n)
		if warn {
			c.log().Warn("audit_cloudwatch_dropped", zap.Int64("dropped_total", dropped),
				zap.Int("buffered", buffered), zap.String("why", "buffer full while CloudWatch Logs cannot be reached; the events are still in the audit log file"))
		}
	}
	if c.Metrics != nil {
		c.Metrics.CloudWatchBuffered(buffered)
	}
	select {
	case c.wakeCh() <- struct{}{}:
	default:
	}
}

// Err returns nil while the sink delivers (always with FailOpen), and an
// error wrapping ErrCloudWatchDown and the last failure otherwise.
func (c *CloudWatch) Err() error {
	if c.FailOpen {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.down {
		return nil
	}
	if c.lastErr != nil {
		return fmt.Errorf("%w: %w", ErrCloudWatchDown, c.lastErr)
	}
	return fmt.Errorf("%w: buffer full, oldest events dropped", ErrCloudWatchDown)
}

// Dropped returns how many lines were dropped from a full buffer, and how
// many were clipped.
func (c *CloudWatch) Dropped() (dropped, clipped int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped, c.clipped
}

// Buffered returns how many lines wait to be delivered.
func (c *CloudWatch) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// Start starts the sender. Close stops it.
func (c *CloudWatch) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.flushCtx != nil {
		return
	}
	c.started = true
	c.initLocked()
	c.runCtx, c.cancelRun = context.WithCancel(context.Background())
	go c.run()
}

// Close sends what is buffered, trying until ctx is done, then stops the
// sender. Lines still buffered then are counted as dropped, and an error
// says how many.
func (c *CloudWatch) Close(ctx context.Context) error {
	c.mu.Lock()
	c.initLocked()
	if c.flushCtx != nil {
		c.mu.Unlock()
		return nil
	}
	c.flushCtx = ctx
	started := c.started
	close(c.closing)
	c.mu.Unlock()
	if started {
		stop := context.AfterFunc(ctx, c.cancelRun)
		<-c.done
		stop()
		c.cancelRun()
	}
	c.mu.Lock()
	left := len(c.buf)
	c.buf, c.bufBytes = nil, 0
	c.dropped += int64(left)
	c.mu.Unlock()
	if left > 0 {
		c.metricDropped(left)
		cause := context.Cause(ctx)
		if cause == nil {
			cause = errors.New("the sender was never started")
		}
		return fmt.Errorf("flushing audit events to CloudWatch Logs: %d events not delivered: %w", left, cause)
	}
	return nil
}

func (c *CloudWatch) initLocked() {
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	if c.closing == nil {
		c.closing = make(chan struct{})
		c.done = make(chan struct{})
	}
}

func (c *CloudWatch) wakeCh() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.initLocked()
	return c.wake
}

// run is the sender: it waits for a full batch or the flush interval,
// sends, and retries with backoff until the batch is delivered. After
// Close it sends what is left until the flush context is done.
func (c *CloudWatch) run() {
	defer close(c.done)
	// The stream is created before the first batch, and again when
	// PutLogEvents says it is missing.
	needStream := true
	backoff := time.Duration(0)
	timer := time.NewTimer(c.flushInterval())
	defer timer.Stop()
	for {
		closing := c.isClosing()
		if !closing {
			if backoff > 0 {
				if !c.sleep(backoff) {
					continue
				}
			} else if !c.fullBatch() {
				select {
				case <-timer.C:
					timer.Reset(c.flushInterval())
				case <-c.wake:
					continue
				case <-c.closing:
					continue
				}
			}
		} else if c.flushCtx.Err() != nil {
			return
		}
		batch := c.peek()
		if len(batch) == 0 {
			if closing {
				return
			}
			continue
		}
		ctx := c.runCtx
		if closing {
			ctx = c.flushCtx
		}
		err := c.deliver(ctx, batch, &needStream)
		if err != nil {
			if c.failed(err) {
				c.discard(batch, err)
				backoff = 0
				continue
			}
			backoff = min(max(2*backoff, cwBackoffMin), cwBackoffMax)
			if closing {
				if !sleepCtx(c.flushCtx, backoff) {
					return
				}
			}
			continue
		}
		backoff = 0
		c.delivered(batch[len(batch)-1].id, len(batch))
	}
}

// sleep waits d, or less if Close begins; it reports whether d passed.
func (c *CloudWatch) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closing:
		return false
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *CloudWatch) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// fullBatch reports whether the buffer holds more than one batch can take.
func (c *CloudWatch) fullBatch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.buf)
	switch {
	case n > cwMaxBatchEvents:
		return true
	case n == 0 || c.bufBytes+cwEventOverhead*n <= cwMaxBatchBytes &&
		time.Duration(c.buf[n-1].ts-c.buf[0].ts)*time.Millisecond <= cwMaxBatchSpan:
		// The common case, without walking the buffer at every line.
		return false
	}
	return batchLen(c.buf) < n
}

// peek copies the first batch of the buffer.
func (c *CloudWatch) peek() []cwEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]cwEntry(nil), c.buf[:batchLen(c.buf)]...)
}

// batchLen returns how many of the first entries of buf fit in one
// PutLogEvents call: at most cwMaxBatchEvents, cwMaxBatchBytes with the
// per-event overhead, and cwMaxBatchSpan between the first and the last.
// Entries are in chronological order already (WriteLine's timestamps never
// go back). It is at least 1 when buf is not empty: one entry always fits
// (cwMaxMessage).
func batchLen(buf []cwEntry) int {
	size := 0
	for i, e := range buf {
		if i == cwMaxBatchEvents || size+e.size() > cwMaxBatchBytes ||
			time.Duration(e.ts-buf[0].ts)*time.Millisecond > cwMaxBatchSpan {
			return i
		}
		size += e.size()
	}
	return len(buf)
}

// deliver sends batch, creating the stream first if needed.
func (c *CloudWatch) deliver(ctx context.Context, batch []cwEntry, needStream *bool) error {
	if *needStream {
		if err := c.createStream(ctx); err != nil {
			return err
		}
		*needStream = false
	}
	events := make([]types.InputLogEvent, len(batch))
	for i, e := range batch {
		events[i] = types.InputLogEvent{Message: aws.String(e.msg), Timestamp: aws.Int64(e.ts)}
	}
	cctx, cancel := context.WithTimeout(ctx, c.callTimeout())
	defer cancel()
	out, err := c.Client.PutLogEvents(cctx, &cloudwatchlogs.PutLogEventsInput{
		LogGroupName: aws.String(c.LogGroup), LogStreamName: aws.String(c.LogStream), LogEvents: events})
	if err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			*needStream = true
		}
		return fmt.Errorf("putting %d audit events to CloudWatch Logs %s/%s: %w", len(batch), c.LogGroup, c.LogStream, err)
	}
	if r := out.RejectedLogEventsInfo; r != nil {
		c.rejected(r, len(batch))
	}
	return nil
}

// rejected counts the events CloudWatch accepted the call for but did not
// store (too old, too new, or past the group's retention) as dropped.
func (c *CloudWatch) rejected(r *types.RejectedLogEventsInfo, n int) {
	lost := 0
	if i := r.TooOldLogEventEndIndex; i != nil {
		lost += int(*i)
	}
	if i := r.ExpiredLogEventEndIndex; i != nil && int(*i) > lost {
		lost = int(*i)
	}
	if i := r.TooNewLogEventStartIndex; i != nil && int(*i) < n {
		lost += n - int(*i)
	}
	if lost == 0 {
		return
	}
	c.mu.Lock()
	c.dropped += int64(lost)
	c.mu.Unlock()
	c.metricDropped(lost)
	c.log().Warn("audit_cloudwatch_rejected", zap.Int("events", lost),
		zap.String("why", "CloudWatch Logs refused events whose time is too old or too new; they are still in the audit log file"))
}

// createStream creates the log stream; one that exists already is fine.
func (c *CloudWatch) createStream(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.callTimeout())
	defer cancel()
	_, err := c.Client.CreateLogStream(cctx, &cloudwatchlogs.CreateLogStreamInput{
		LogGroupName: aws.String(c.LogGroup), LogStreamName: aws.String(c.LogStream)})
	var exists *types.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("creating CloudWatch Logs stream %s in group %s (the log group must exist): %w", c.LogStream, c.LogGroup, err)
		}
		return fmt.Errorf("creating CloudWatch Logs stream %s/%s: %w", c.LogGroup, c.LogStream, err)
	}
	return nil
}

// failed records a failed attempt. It reports whether the batch should be
// given up: CloudWatch refused it as invalid (InvalidParameterException,
// which no retry changes) cwFailAfter times in a row. The batcher keeps to
// the documented limits, so this is for limits that change under it; a
// stuck batch must not stop delivery for good.
func (c *CloudWatch) failed(err error) (giveUp bool) {
	var ip *types.InvalidParameterException
	c.mu.Lock()
	c.failing++
	giveUp = errors.As(err, &ip) && c.failing >= cwFailAfter
	c.lastErr = err
	if c.failing >= cwFailAfter && !c.FailOpen {
		c.down = true
	}
	warn := c.shouldWarn(warnFail)
	n, buffered := c.failing, len(c.buf)
	c.mu.Unlock()
	if c.Metrics != nil {
		c.Metrics.CloudWatchFailure()
	}
	if warn {
		c.log().Warn("audit_cloudwatch_failed", zap.Error(err), zap.Int("attempts_in_a_row", n),
			zap.Int("buffered", buffered), zap.Bool("fail_open", c.FailOpen))
	}
	return giveUp
}

// discard takes a batch CloudWatch keeps refusing off the buffer, counted
// as dropped. Failing closed, the sink stays down until a later batch is
// delivered.
func (c *CloudWatch) discard(batch []cwEntry, err error) {
	last := batch[len(batch)-1].id
	c.mu.Lock()
	n := 0
	for len(c.buf) > 0 && c.buf[0].id <= last {
		c.bufBytes -= len(c.buf[0].msg)
		c.buf[0] = cwEntry{}
		c.buf = c.buf[1:]
		n++
	}
	c.dropped += int64(n)
	if !c.FailOpen {
		c.down = true
	}
	c.mu.Unlock()
	c.metricDropped(n)
	c.log().Error("audit_cloudwatch_batch_refused", zap.Error(err), zap.Int("events", n),
		zap.String("why", "CloudWatch Logs refused the batch as invalid; its events are still in the audit log file"))
}

// delivered takes the delivered lines (up to id) off the buffer.
func (c *CloudWatch) delivered(last uint64, n int) {
	c.mu.Lock()
	i := 0
	for i < len(c.buf) && c.buf[i].id <= last {
		c.bufBytes -= len(c.buf[i].msg)
		c.buf[i] = cwEntry{}
		i++
	}
	c.buf = c.buf[i:]
	recovered := c.failing > 0
	c.failing, c.down, c.lastErr = 0, false, nil
	buffered := len(c.buf)
	c.mu.Unlock()
	if c.Metrics != nil {
		c.Metrics.CloudWatchSent(n)
		c.Metrics.CloudWatchBuffered(buffered)
	}
	if recovered {
		c.log().Info("audit_cloudwatch_recovered", zap.Int("buffered", buffered))
	}
}

// Kinds of warnings, each limited on its own.
const (
	warnFail = iota
	warnDrop
)

// shouldWarn reports whether a warning of kind may be logged now; c.mu is
// held.
func (c *CloudWatch) shouldWarn(kind int) bool {
	now := time.Now()
	if now.Sub(c.lastWarn[kind]) < cwWarnEvery {
		return false
	}
	c.lastWarn[kind] = now
	return true
}

func (c *CloudWatch) metricDropped(n int) {
	if c.Metrics != nil {
		c.Metrics.CloudWatchDropped(n)
	}
}

func (c *CloudWatch) log() *zap.Logger {
	if c.Logger == nil {
		return zap.NewNop()
	}
	return c.Logger
}

func (c *CloudWatch) flushInterval() time.Duration {
	if c.FlushInterval > 0 {
		return c.FlushInterval
	}
	return DefaultCloudWatchFlushInterval
}

func (c *CloudWatch) bufferEvents() int {
	if c.BufferEvents > 0 {
		return c.BufferEvents
	}
	return DefaultCloudWatchBufferEvents
}

func (c *CloudWatch) bufferBytes() int {
	if c.BufferBytes > 0 {
		return c.BufferBytes
	}
	return DefaultCloudWatchBufferBytes
}

func (c *CloudWatch) callTimeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return DefaultCloudWatchCallTimeout
}

var _ Sink = (*CloudWatch)(nil)
