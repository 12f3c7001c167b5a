package awsfake

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ServiceLogs is the SigV4 service name and Call.Service of CloudWatch Logs.
// The SDK's client reaches the fake through AWS_ENDPOINT_URL_CLOUDWATCH_LOGS.
const ServiceLogs = "logs"

// logsTargetPrefix starts the X-Amz-Target of every CloudWatch Logs
// operation (awsJson1_1, "Logs_20140328.PutLogEvents").
const logsTargetPrefix = "Logs_20140328."

// logsAPI is the fake's CloudWatch Logs: log groups and streams, partitioned
// by the region of the request's signature.
var logsAPI = &api{
	service:    ServiceLogs,
	proto:      protoJSON,
	messageKey: "message",
	ops: map[string]handlerFunc{
		"CreateLogGroup":     (*Server).createLogGroup,
		"CreateLogStream":    (*Server).createLogStream,
		"PutLogEvents":       (*Server).putLogEvents,
		"GetLogEvents":       (*Server).getLogEvents,
		"DescribeLogStreams": (*Server).describeLogStreams,
	},
}

// PutLogEvents limits, as CloudWatch Logs enforces them: at most
// logsMaxBatchEvents events, whose UTF-8 message bytes plus
// logsEventOverhead each sum to at most logsMaxBatchBytes, in chronological
// order, spanning at most a day; each message at most logsMaxEventBytes
// (1 MiB minus the overhead). Events more than two hours ahead or fourteen
// days behind the server's clock are rejected (rejectedLogEventsInfo), not
// stored.
const (
	logsMaxBatchEvents = 10000
	logsMaxBatchBytes  = 1048576
	logsEventOverhead  = 26
	logsMaxEventBytes  = logsMaxBatchBytes - logsEventOverhead
	logsMaxSpan        = 24 * time.Hour
	logsTooNew         = 2 * time.Hour
	logsTooOld         = 14 * 24 * time.Hour
	// logsMaxGet is the most events one GetLogEvents answer carries.
	logsMaxGet = 10000
)

var (
	logGroupNameRe  = regexp.MustCompile(`^[.\-_/#A-Za-z0-9]{1,512}$`)
	logStreamNameRe = regexp.MustCompile(`^[^:*]{1,512}$`)
)

// LogEvent is one event stored in a log stream.
type LogEvent struct {
	// Timestamp is the event's time as the client gave it, in
	// milliseconds since the epoch; IngestionTime when the fake stored it.
	Timestamp     int64
	IngestionTime int64
	Message       string
}

// logGroupKey names a log group in a region.
type logGroupKey struct{ region, name string }

// logGroup is a stored log group.
type logGroup struct {
	created time.Time
	streams map[string]*logStream
}

// logStream is a stored log stream.
type logStream struct {
	created time.Time
	events  []LogEvent
}

// CreateLogGroup creates the log group name in region, as `aws logs
// create-log-group` does; creating one that exists does nothing.
func (s *Server) CreateLogGroup(region, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logGroupLocked(region, name, true)
}

// LogEvents returns the events stored in a stream, in order, or nil if the
// stream does not exist.
func (s *Server) LogEvents(region, group, stream string) []LogEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.logGroupLocked(region, group, false)
	if g == nil || g.streams[stream] == nil {
		return nil
	}
	return append([]LogEvent(nil), g.streams[stream].events...)
}

// DeleteLogStream deletes a stream and its events, as `aws logs
// delete-log-stream` does; a missing one is ignored.
func (s *Server) DeleteLogStream(region, group, stream string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.logGroupLocked(region, group, false); g != nil {
		delete(g.streams, stream)
	}
}

// logGroupLocked returns the group, creating it if create is set; s.mu is
// held.
func (s *Server) logGroupLocked(region, name string, create bool) *logGroup {
	if s.logGroups == nil {
		s.logGroups = make(map[logGroupKey]*logGroup)
	}
	k := logGroupKey{region, name}
	g := s.logGroups[k]
	if g == nil && create {
		g = &logGroup{created: s.now(), streams: make(map[string]*logStream)}
		s.logGroups[k] = g
	}
	return g
}

// Errors as CloudWatch Logs answers them (HTTP 400, awsJson "__type").
func logsInvalid(msg string) error {
	return &apiError{http.StatusBadRequest, "InvalidParameterException", msg}
}

func logsNotFound(msg string) error {
	return &apiError{http.StatusBadRequest, "ResourceNotFoundException", msg}
}

const (
	logsGroupMissing  = "The specified log group does not exist."
	logsStreamMissing = "The specified log stream does not exist."
)

// logsNames decodes and checks logGroupName and logStreamName (the latter
// only if stream is set).
func logsNames(group, stream *string, needStream bool) error {
	if group == nil {
		return logsInvalid("1 validation error detected: Value null at 'logGroupName' failed to satisfy constraint: Member must not be null")
	}
	if !logGroupNameRe.MatchString(*group) {
		return logsInvalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+", *group))
	}
	if !needStream {
		return nil
	}
	if stream == nil {
		return logsInvalid("1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint: Member must not be null")
	}
	if !logStreamNameRe.MatchString(*stream) {
		return logsInvalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*", *stream))
	}
	return nil
}

func (s *Server) createLogGroup(req *request) (any, error) {
	var in struct {
		LogGroupName *string `json:"logGroupName"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if err := logsNames(in.LogGroupName, nil, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logGroupLocked(req.region, *in.LogGroupName, false) != nil {
		return nil, &apiError{http.StatusBadRequest, "ResourceAlreadyExistsException", "The specified log group already exists"}
	}
	s.logGroupLocked(req.region, *in.LogGroupName, true)
	return struct{}{}, nil
}

func (s *Server) createLogStream(req *request) (any, error) {
	var in struct {
		LogGroupName  *string `json:"logGroupName"`
		LogStreamName *string `json:"logStreamName"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if err := logsNames(in.LogGroupName, in.LogStreamName, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.logGroupLocked(req.region, *in.LogGroupName, false)
	if g == nil {
		return nil, logsNotFound(logsGroupMissing)
	}
	if g.streams[*in.LogStreamName] != nil {
		return nil, &apiError{http.StatusBadRequest, "ResourceAlreadyExistsException", "The specified log stream already exists"}
	}
	g.streams[*in.LogStreamName] = &logStream{created: s.now()}
	return struct{}{}, nil
}

type logsInputEvent struct {
	Timestamp *int64  `json:"timestamp"`
	Message   *string `json:"message"`
}

type logsRejected struct {
	TooNewLogEventStartIndex *int `json:"tooNewLogEventStartIndex,omitempty"`
	TooOldLogEventEndIndex   *int `json:"tooOldLogEventEndIndex,omitempty"`
}

type logsPutOut struct {
	NextSequenceToken     string        `json:"nextSequenceToken"`
	RejectedLogEventsInfo *logsRejected `json:"rejectedLogEventsInfo,omitempty"`
}

// putLogEvents implements PutLogEvents: the whole batch is refused
// (InvalidParameterException) when it breaks a limit or is out of order;
// events too far from the server's clock are left out and reported. The
// sequence token is ignored, as CloudWatch Logs has done since 2023.
func (s *Server) putLogEvents(req *request) (any, error) {
	var in struct {
		LogGroupName  *string          `json:"logGroupName"`
		LogStreamName *string          `json:"logStreamName"`
		LogEvents     []logsInputEvent `json:"logEvents"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if err := logsNames(in.LogGroupName, in.LogStreamName, true); err != nil {
		return nil, err
	}
	n := len(in.LogEvents)
	if n == 0 || n > logsMaxBatchEvents {
		return nil, logsInvalid(fmt.Sprintf("1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length between 1 and %d", logsMaxBatchEvents))
	}
	size := 0
	for i, e := range in.LogEvents {
		if e.Timestamp == nil || e.Message == nil {
			return nil, logsInvalid(fmt.Sprintf("1 validation error detected: Value null at 'logEvents.%d.member' failed to satisfy constraint: Member must not be null", i+1))
		}
		if len(*e.Message) < 1 || len(*e.Message) > logsMaxEventBytes || !utf8.ValidString(*e.Message) {
			return nil, logsInvalid(fmt.Sprintf("Log event %d: the message must be 1 to %d bytes of UTF-8", i, logsMaxEventBytes))
		}
		if i > 0 && *e.Timestamp < *in.LogEvents[i-1].Timestamp {
			return nil, logsInvalid("Log events in a single PutLogEvents request must be in chronological order.")
		}
		size += len(*e.Message) + logsEventOverhead
	}
	if size > logsMaxBatchBytes {
		return nil, logsInvalid(fmt.Sprintf("Upload too large: %d bytes exceeds limit of %d", size, logsMaxBatchBytes))
	}
	if time.Duration(*in.LogEvents[n-1].Timestamp-*in.LogEvents[0].Timestamp)*time.Millisecond > logsMaxSpan {
		return nil, logsInvalid("The batch of log events in a single PutLogEvents request cannot span more than 24 hours.")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.logGroupLocked(req.region, *in.LogGroupName, false)
	if g == nil {
		return nil, logsNotFound(logsGroupMissing)
	}
	st := g.streams[*in.LogStreamName]
	if st == nil {
		return nil, logsNotFound(logsStreamMissing)
	}
	now := s.now()
	oldest, newest := now.Add(-logsTooOld).UnixMilli(), now.Add(logsTooNew).UnixMilli()
	var rej logsRejected
	for i, e := range in.LogEvents {
		switch ts := *e.Timestamp; {
		case ts < oldest:
			rej.TooOldLogEventEndIndex = ptr(i + 1)
		case ts > newest:
			if rej.TooNewLogEventStartIndex == nil {
				rej.TooNewLogEventStartIndex = ptr(i)
			}
		default:
			st.events = append(st.events, LogEvent{Timestamp: ts, IngestionTime: now.UnixMilli(), Message: *e.Message})
		}
	}
	out := logsPutOut{NextSequenceToken: strconv.Itoa(len(st.events))}
	if rej.TooNewLogEventStartIndex != nil || rej.TooOldLogEventEndIndex != nil {
		out.RejectedLogEventsInfo = &rej
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

type logsOutputEvent struct {
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
}

type logsGetOut struct {
	Events            []logsOutputEvent `json:"events"`
	NextForwardToken  string            `json:"nextForwardToken"`
	NextBackwardToken string            `json:"nextBackwardToken"`
}

// getLogEvents implements GetLogEvents, forward from the head (or the
// tail's last page without startFromHead): tokens are "f/INDEX" and
// "b/INDEX"; at the end of the stream the forward token given is
// returned again, which is how a reader knows it has everything.
func (s *Server) getLogEvents(req *request) (any, error) {
	var in struct {
		LogGroupName  *string `json:"logGroupName"`
		LogStreamName *string `json:"logStreamName"`
		StartFromHead *bool   `json:"startFromHead"`
		NextToken     *string `json:"nextToken"`
		Limit         *int    `json:"limit"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if err := logsNames(in.LogGroupName, in.LogStreamName, true); err != nil {
		return nil, err
	}
	limit := logsMaxGet
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > logsMaxGet {
			return nil, logsInvalid(fmt.Sprintf("1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", logsMaxGet))
		}
		limit = *in.Limit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.logGroupLocked(req.region, *in.LogGroupName, false)
	if g == nil {
		return nil, logsNotFound(logsGroupMissing)
	}
	st := g.streams[*in.LogStreamName]
	if st == nil {
		return nil, logsNotFound(logsStreamMissing)
	}
	total := len(st.events)
	start := max(total-limit, 0)
	if in.StartFromHead != nil && *in.StartFromHead {
		start = 0
	}
	if in.NextToken != nil {
		dir, idx, ok := strings.Cut(*in.NextToken, "/")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || (dir != "f" && dir != "b") || i < 0 || i > total {
			return nil, logsInvalid("The specified nextToken is invalid.")
		}
		start = i
		if dir == "b" {
			start = max(i-limit, 0)
		}
	}
	end := min(start+limit, total)
	out := logsGetOut{Events: []logsOutputEvent{}, NextForwardToken: fmt.Sprintf("f/%d", end), NextBackwardToken: fmt.Sprintf("b/%d", start)}
	for _, e := range st.events[start:end] {
		out.Events = append(out.Events, logsOutputEvent{Timestamp: e.Timestamp, Message: e.Message, IngestionTime: e.IngestionTime})
	}
	return out, nil
}

type logsStreamOut struct {
	LogStreamName       string `json:"logStreamName"`
	CreationTime        int64  `json:"creationTime"`
	FirstEventTimestamp int64  `json:"firstEventTimestamp,omitempty"`
	LastEventTimestamp  int64  `json:"lastEventTimestamp,omitempty"`
	LastIngestionTime   int64  `json:"lastIngestionTime,omitempty"`
	Arn                 string `json:"arn"`
	StoredBytes         int64  `json:"storedBytes"`
}

// describeLogStreams implements DescribeLogStreams by name prefix, in name
// order, without paging.
func (s *Server) describeLogStreams(req *request) (any, error) {
	var in struct {
		LogGroupName        *string `json:"logGroupName"`
		LogStreamNamePrefix *string `json:"logStreamNamePrefix"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if err := logsNames(in.LogGroupName, nil, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.logGroupLocked(req.region, *in.LogGroupName, false)
	if g == nil {
		return nil, logsNotFound(logsGroupMissing)
	}
	out := struct {
		LogStreams []logsStreamOut `json:"logStreams"`
	}{LogStreams: []logsStreamOut{}}
	for _, name := range sortedKeys(g.streams) {
		if in.LogStreamNamePrefix != nil && !strings.HasPrefix(name, *in.LogStreamNamePrefix) {
			continue
		}
		st := g.streams[name]
		o := logsStreamOut{LogStreamName: name, CreationTime: st.created.UnixMilli(),
			Arn: fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s:log-stream:%s", req.region, fakeAccountID, *in.LogGroupName, name)}
		if n := len(st.events); n > 0 {
			o.FirstEventTimestamp, o.LastEventTimestamp = st.events[0].Timestamp, st.events[n-1].Timestamp
			o.LastIngestionTime = st.events[n-1].IngestionTime
		}
		for _, e := range st.events {
			o.StoredBytes += int64(len(e.Message))
		}
		out.LogStreams = append(out.LogStreams, o)
	}
	return out, nil
}
