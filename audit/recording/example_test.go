package recording_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"bastion/audit/recording"
)

func ExampleRecorder() {
	dir, err := os.MkdirTemp("", "recordings")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	r, err := recording.Create(dir, "session-1.cast", recording.Header{
		Width:  80,
		Height: 24,
		Start:  time.Now(),
		Title:  "alice@web-1 as ec2-user",
		Env:    map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// The splice's copy loops call Output and Input with what they copy;
	// a window-change request calls Resize.
	r.Input([]byte("echo \xe2\x82")) // a character split between
	r.Input([]byte("\xac\r"))        // two chunks is recorded whole
	r.Output([]byte("echo \u20ac\r\n\u20ac\r\n"))
	r.Resize(120, 40)
	if err := r.Close(); err != nil { // now the file is dir/session-1.cast
		log.Fatal(err)
	}

	f, err := os.Open(r.Path())
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	h, events, err := recording.Parse(f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%dx%d %q\n", h.Width, h.Height, h.Title)
	for _, e := range events {
		fmt.Printf("%s %q\n", e.Type, e.Data)
	}
	// Output:
	// 80x24 "alice@web-1 as ec2-user"
	// i "echo "
	// i "€\r"
	// o "echo €\r\n€\r\n"
	// r "120x40"
}
