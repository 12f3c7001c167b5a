package recording

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const header = `{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000, "env": {"TERM": "xterm"}, "theme": {}}` + "\n"
	valid := []struct {
		name string
		in   string
		want []Event
	}{
		{"header only", header, nil},
		{"events", header + `[0.5, "o", "a\u00e9"]` + "\n" + `[0.5, "i", "b"]` + "\n" + `[1.25, "r", "100x40"]` + "\n" + `[2, "m", "x"]` + "\n",
			[]Event{
				{500 * time.Millisecond, "o", "a\u00e9"},
				{500 * time.Millisecond, "i", "b"},
				{1250 * time.Millisecond, "r", "100x40"},
				{2 * time.Second, "m", "x"},
			}},
		{"last line without newline", header + `[0.1, "o", "a"]`, []Event{{100 * time.Millisecond, "o", "a"}}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			h, events, err := Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !slices.Equal(events, tc.want) {
				t.Errorf("got events %v, want %v", events, tc.want)
			}
			if h.Width != 80 || h.Height != 24 || h.Start.Unix() != 1700000000 || h.Env["TERM"] != "xterm" {
				t.Errorf("got header %+v, want 80x24 at 1700000000 with TERM", h)
			}
		})
	}

	invalid := []struct {
		name, in, want string
	}{
		{"empty", "", "no header"},
		{"header not JSON", "asciicast\n", "header"},
		{"header not an object", "[2, 80, 24]\n", "header"},
		{"version 1", `{"version": 1, "width": 80, "height": 24}` + "\n", "version 1"},
		{"no version", `{"width": 80, "height": 24}` + "\n", "no version"},
		{"no width", `{"version": 2, "height": 24}` + "\n", "width"},
		{"zero height", `{"version": 2, "width": 80, "height": 0}` + "\n", "height"},
		{"fractional width", `{"version": 2, "width": 80.5, "height": 24}` + "\n", "header"},
		{"header invalid UTF-8", `{"version": 2, "width": 80, "height": 24, "title": "` + "\xff" + `"}` + "\n", "line 1: not valid UTF-8"},
		{"event invalid UTF-8", header + "[0, \"o\", \"\xc3\"]\n", "line 2: not valid UTF-8"},
		{"event not an array", header + `{"t": 0}` + "\n", "line 2"},
		{"two elements", header + `[0, "o"]` + "\n", "2 elements"},
		{"four elements", header + `[0, "o", "a", "b"]` + "\n", "4 elements"},
		{"time a string", header + `["0", "o", "a"]` + "\n", "event time"},
		{"time null", header + `[null, "o", "a"]` + "\n", "null"},
		{"negative time", header + `[-1, "o", "a"]` + "\n", "out of range"},
		{"time goes back", header + `[2, "o", "a"]` + "\n" + `[1, "o", "b"]` + "\n", "line 3: time"},
		{"unknown type", header + `[0, "x", "a"]` + "\n", `unknown event type "x"`},
		{"data not a string", header + `[0, "o", 5]` + "\n", "event data"},
		{"bad resize", header + `[0, "r", "80 x 24"]` + "\n", "COLSxROWS"},
		{"zero resize", header + `[0, "r", "0x24"]` + "\n", "COLSxROWS"},
		{"blank line", header + "\n" + `[0, "o", "a"]` + "\n", "line 2"},
		{"cut line", header + `[0.1, "o", "ab`, "line 2"},
		{"trailing data", header + `[0, "o", "a"] x` + "\n", "line 2"},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(strings.NewReader(tc.in))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}
