package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid is wrapped by the errors Parse returns for a file that is not
// valid asciicast v2.
var ErrInvalid = errors.New("invalid asciicast v2")

// Event is one event line of a recording.
type Event struct {
	// Time is when the event happened, relative to the header's Start.
	Time time.Duration
	// Type is TypeOutput, TypeInput, TypeResize or TypeMarker.
	Type string
	// Data is the text output or typed, "COLSxROWS" for a resize, or a
	// marker's label.
	Data string
}

// headerJSON is the header line as written. Parse reads it into
// headerCheck, whose pointers tell a missing field from a zero one.
type headerJSON struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

type headerCheck struct {
	Version   *int              `json:"version"`
	Width     *int              `json:"width"`
	Height    *int              `json:"height"`
	Timestamp *int64            `json:"timestamp"`
	Command   string            `json:"command"`
	Title     string            `json:"title"`
	Env       map[string]string `json:"env"`
}

// maxEventSeconds bounds event times so that they fit a time.Duration.
const maxEventSeconds = math.MaxInt64 / int64(time.Second)

// Parse reads an asciicast v2 recording and checks that it is valid: every
// line is valid UTF-8 and one JSON value; the first is a header object with
// "version" 2 and positive integer "width" and "height" (other header
// fields are optional, unknown ones ignored); every other line is an event
// array [time, type, data] with a non-negative time that never decreases,
// a type among "o", "i", "r" and "m", string data, and "COLSxROWS" data
// for a resize. Only the last line may lack its newline. Errors wrap
// ErrInvalid, or are the reader's.
func Parse(r io.Reader) (Header, []Event, error) {
	br := bufio.NewReader(r)
	var (
		h      Header
		events []Event
		last   time.Duration
	)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return Header{}, nil, fmt.Errorf("reading recording: %w", err)
		}
		if len(line) == 0 && err != nil {
			if n == 1 {
				return Header{}, nil, fmt.Errorf("%w: no header", ErrInvalid)
			}
			return h, events, nil
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if !utf8.Valid(line) {
			return Header{}, nil, fmt.Errorf("%w: line %d: not valid UTF-8", ErrInvalid, n)
		}
		if n == 1 {
			if h, err = parseHeader(line); err != nil {
				return Header{}, nil, fmt.Errorf("%w: header: %v", ErrInvalid, err)
			}
			continue
		}
		e, err := parseEvent(line)
		if err != nil {
			return Header{}, nil, fmt.Errorf("%w: line %d: %v", ErrInvalid, n, err)
		}
		if e.Time < last {
			return Header{}, nil, fmt.Errorf("%w: line %d: time %v is before the previous event's %v", ErrInvalid, n, e.Time, last)
		}
		last = e.Time
		events = append(events, e)
	}
}

func parseHeader(line []byte) (Header, error) {
	var hc headerCheck
	if err := json.Unmarshal(line, &hc); err != nil {
		return Header{}, err
	}
	switch {
	case hc.Version == nil:
		return Header{}, errors.New("no version")
	case *hc.Version != 2:
		return Header{}, fmt.Errorf("version %d, want 2", *hc.Version)
	case hc.Width == nil || *hc.Width <= 0:
		return Header{}, errors.New("no positive width")
	case hc.Height == nil || *hc.Height <= 0:
		return Header{}, errors.New("no positive height")
	}
	h := Header{
		Width:   *hc.Width,
		Height:  *hc.Height,
		Command: hc.Command,
		Title:   hc.Title,
		Env:     hc.Env,
	}
	if hc.Timestamp != nil {
		h.Start = time.Unix(*hc.Timestamp, 0)
	}
	return h, nil
}

func parseEvent(line []byte) (Event, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Event{}, err
	}
	if len(raw) != 3 {
		return Event{}, fmt.Errorf("event has %d elements, want 3", len(raw))
	}
	for i, v := range raw {
		// Unmarshal leaves a number or string alone for null.
		if bytes.Equal(v, []byte("null")) {
			return Event{}, fmt.Errorf("event element %d is null", i)
		}
	}
	var (
		secs float64
		e    Event
	)
	if err := json.Unmarshal(raw[0], &secs); err != nil {
		return Event{}, fmt.Errorf("event time: %v", err)
	}
	if secs < 0 || secs > float64(maxEventSeconds) {
		return Event{}, fmt.Errorf("event time %v out of range", secs)
	}
	e.Time = time.Duration(math.Round(secs*1e6)) * time.Microsecond
	if err := json.Unmarshal(raw[1], &e.Type); err != nil {
		return Event{}, fmt.Errorf("event type: %v", err)
	}
	if err := json.Unmarshal(raw[2], &e.Data); err != nil {
		return Event{}, fmt.Errorf("event data: %v", err)
	}
	switch e.Type {
	case TypeOutput, TypeInput, TypeMarker:
	case TypeResize:
		if !validSize(e.Data) {
			return Event{}, fmt.Errorf("resize data %q, want COLSxROWS", e.Data)
		}
	default:
		return Event{}, fmt.Errorf("unknown event type %q", e.Type)
	}
	return e, nil
}

// validSize reports whether s is "COLSxROWS" with two positive decimal
// integers.
func validSize(s string) bool {
	cols, rows, ok := strings.Cut(s, "x")
	if !ok {
		return false
	}
	for _, v := range []string{cols, rows} {
		if v == "" || strings.TrimLeft(v, "0123456789") != "" {
			return false
		}
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return false
		}
	}
	return true
}
