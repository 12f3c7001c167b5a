package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRenderTable(t *testing.T) {
	got := renderTable([]string{"case", "p50 ms"}, [][]string{
		{"(a) OpenSSH -J", "12.5"},
		{"a|b"},
	})
	want := "" +
		"| case           | p50 ms |\n" +
		"|----------------|--------|\n" +
		"| (a) OpenSSH -J | 12.5   |\n" +
		"| a\\|b           |        |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRenderTableUnicodeWidth(t *testing.T) {
	got := renderTable([]string{"RSS"}, [][]string{{"1.0 → 2.0"}})
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), got)
	}
	if a, b := len([]rune(lines[0])), len([]rune(lines[2])); a != b {
		t.Errorf("header is %d runes wide, row %d; want equal:\n%s", a, b, got)
	}
}

func TestFmtRatio(t *testing.T) {
	r := 0.5
	if got := fmtRatio(&r); got != "0.50x" {
		t.Errorf("got %q, want 0.50x", got)
	}
	if got := fmtRatio(nil); got != "n/a" {
		t.Errorf("got %q, want n/a", got)
	}
	if got := withRatio("100", &r, true); got != "100" {
		t.Errorf("base: got %q, want 100", got)
	}
	if got := withRatio("50", &r, false); got != "50 (0.50x)" {
		t.Errorf("got %q, want 50 (0.50x)", got)
	}
}

func TestBulkStats(t *testing.T) {
	var samples []BulkSample
	add := func(mode, dir string, mbps ...float64) {
		for _, v := range mbps {
			samples = append(samples, BulkSample{Mode: mode, Direction: dir, MBps: v, CPUPerGiB: 1000 / v})
		}
	}
	add(modeOpenSSH, "down", 100, 300, 200)
	add(modeBastionJump, "down", 100, 50, 150)
	add(modeBastionDirect, "up", 40)
	add(modeOpenSSH, "up", 80)
	stats := bulkStats(samples)
	if len(stats) != 4 {
		t.Fatalf("got %d stats, want 4: %+v", len(stats), stats)
	}
	a, _ := findBulk(stats, modeOpenSSH, "down")
	b, _ := findBulk(stats, modeBastionJump, "down")
	if a.MBps.Median != 200 || b.MBps.Median != 100 {
		t.Errorf("got medians %v and %v, want 200 and 100", a.MBps.Median, b.MBps.Median)
	}
	if b.MBpsRatio == nil || *b.MBpsRatio != 0.5 {
		t.Errorf("got MB/s ratio %v, want 0.5", b.MBpsRatio)
	}
	if b.CPURatio == nil || *b.CPURatio != 2 {
		t.Errorf("got CPU ratio %v, want 2", b.CPURatio)
	}
	if _, ok := findBulk(stats, modeBastionDirect, "down"); ok {
		t.Error("got down stats for (c), which has no down samples")
	}
	c, _ := findBulk(stats, modeBastionDirect, "up")
	if c.MBpsRatio == nil || *c.MBpsRatio != 0.5 {
		t.Errorf("up: got ratio %v, want 0.5", c.MBpsRatio)
	}
}

// testReport is a small report with every section.
func testReport() *Report {
	half, two, third := 0.5, 2.0, 0.3
	g := 7.0
	return &Report{
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Finished: time.Date(2026, 1, 2, 3, 14, 5, 0, time.UTC),
		Machine:  Machine{CPUModel: "Test CPU", Cores: 2, Kernel: "6.1.0", MemTotalBytes: 8 << 30, LoadAvgStart: "0.10 0.20 0.30", LoadAvgEnd: "1.00 0.50 0.40"},
		Versions: Versions{Go: "go1.26.8", OpenSSH: "OpenSSH_9.2p1", BastionCommit: "abc123", BastionDirty: true},
		Params:   Params{Bytes: 64 << 20, Rounds: 2, Connects: 20, Sessions: 200, OpenSSHSessions: 50, SetupConcurrency: 4, SetupDuration: "2s", AWSLatency: "50ms"},
		Bulk: &BulkResult{CPUMethod: "the method", Stats: []BulkStats{
			{Mode: modeOpenSSH, Direction: "down", MBps: Summary{N: 2, Median: 400}, CPUPerGiB: Summary{N: 2, Median: 1}},
			{Mode: modeBastionJump, Direction: "down", MBps: Summary{N: 2, Median: 200}, CPUPerGiB: Summary{N: 2, Median: 2}, MBpsRatio: &half, CPURatio: &two},
		}},
		Latency: &LatencyResult{Cases: []LatencyCase{
			{Name: "(a) OpenSSH -J", Mode: modeOpenSSH, Cached: true, Millis: []float64{10, 12}, Summary: Summary{N: 2, Median: 11, P99: 12},
				CPU: Summary{N: 2, Mean: 40}},
			{Name: "(b) bastion -J, Lightsail uncached", Mode: modeBastionJump, Millis: []float64{100}, Summary: Summary{N: 1, Median: 100, P99: 100},
				CPU: Summary{N: 1, Mean: 20}, CPURatio: &half,
				AWSCalls: map[string]int{"GetInstance": 1, "GetInstanceAccessDetails": 1}},
			{Name: "no jump host", Mode: modeNone, Millis: []float64{5}, Summary: Summary{N: 1, Median: 5, P99: 5}},
		}},
		Sessions: &SessionsResult{MemoryMethod: "the memory method", Cases: []SessionsCase{
			{Mode: modeOpenSSH, Sessions: 50, Established: 50, EstablishSeconds: 2, RSSBefore: 10 << 20, RSSAfter: 510 << 20, RSSPerSession: 10 << 20, PSSPerSession: 2 << 20, Procs: 101},
			{Mode: modeBastionDirect, Sessions: 200, Established: 200, EstablishSeconds: 1, RSSBefore: 20 << 20, RSSAfter: 70 << 20, RSSPerSession: 256 << 10, PSSPerSession: 256 << 10, PSSRatio: &third, GoroutinesPerSes: &g, Procs: 1},
		}},
		Setup: &SetupResult{Cases: []SetupCase{
			{Mode: modeOpenSSH, Concurrency: 4, Rate: 10, Completed: 20, Millis: Summary{Median: 400, P99: 500}},
			{Mode: modeBastionJump, Concurrency: 4, Rate: 20, RateRatio: &two, Completed: 40, Failures: 1, Millis: Summary{Median: 200, P99: 300}},
		}},
		Notes: []string{"a note"},
	}
}

func TestRenderMarkdown(t *testing.T) {
	md := renderMarkdown(testReport())
	for _, want := range []string{
		"# bastion vs OpenSSH as a jump host, 2026-01-02 03:04 UTC",
		"Test CPU, 2 cores, Linux 6.1.0, 8.0 GiB RAM",
		"bastion abc123 (uncommitted changes)",
		"## Bulk transfer, 64MiB each way (median of 2 rounds",
		"| down MB/s                 | 400            | 200 (0.50x)    |                    |",
		"| jump host CPU s/GiB, down | 1.00           | 2.00 (2.00x)   |",
		"CPU: the method",
		"(20 connects per case",
		"| (a) OpenSSH -J                     | 11.0   | 12.0   | n/a        | n/a        | 40.0                            | 0        |",
		"| (b) bastion -J, Lightsail uncached | 100.0  | 100.0  | n/a        | n/a        | 20.0 (0.50x)                    | 0        | GetInstance 1.00, GetInstanceAccessDetails 1.00 |",
		"| no jump host                       | 5.0    | 5.0    | n/a        | n/a        |                                 | 0        |",
		"| (a) OpenSSH -J     | 50/50    | 2.0 (25/s)",
		"| 10240           | 2048            | n/a",
		"| 256             | 256 (0.30x)     | 7.0",
		"Memory: the memory method",
		"| (b) bastion -J | 20.0 (2.00x) | 200.0  | 300.0  | 40        | 1        |",
		"- a note",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "stopped early") {
		t.Error("markdown says the run stopped early; it did not")
	}
	r := testReport()
	r.Error = "boom"
	if md := renderMarkdown(r); !strings.Contains(md, "**The run stopped early:** boom") {
		t.Errorf("markdown lacks the error:\n%s", md)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	r := testReport()
	jsonPath, mdPath, err := writeFiles(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := dir + "/bench-20260102T030405Z.json"; jsonPath != want {
		t.Errorf("got %s, want %s", jsonPath, want)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("the JSON does not parse back: %v", err)
	}
	if back.Versions.BastionCommit != "abc123" || len(back.Latency.Cases[0].Millis) != 2 || *back.Setup.Cases[1].RateRatio != 2 {
		t.Errorf("got %+v, want the report written", back)
	}
	if !strings.Contains(string(b), `"p50_ratio_to_a": null`) {
		t.Error("a missing ratio is not written as null")
	}
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != renderMarkdown(r) {
		t.Error("the markdown file differs from renderMarkdown")
	}
}

func TestBusy(t *testing.T) {
	tests := []struct {
		start, end string
		want       bool
	}{
		{"0.10 0.20 0.30", "0.90 0.50 0.40", false},
		{"1.50 0.20 0.30", "0.10 0.10 0.10", true},
		{"0.10 0.20 0.30", "4.00 1.00 1.00", true},
		{"", "", false},
	}
	for _, tc := range tests {
		if got := busy(Machine{Cores: 2, LoadAvgStart: tc.start, LoadAvgEnd: tc.end}); got != tc.want {
			t.Errorf("%q → %q on 2 cores: got %v, want %v", tc.start, tc.end, got, tc.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bytes != 1<<30 || o.Rounds != 5 || o.Connects != 200 || o.Sessions != 1000 || len(o.Only) != 4 {
		t.Errorf("defaults: got %+v", o)
	}
	o, err = parseOptions([]string{"--bytes", "64MiB", "--rounds", "2", "--connects", "20", "--sessions", "200", "--only", "bulk, setup"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bytes != 64<<20 || o.Rounds != 2 || o.Connects != 20 || o.Sessions != 200 || strings.Join(o.Only, ",") != "bulk,setup" {
		t.Errorf("got %+v", o)
	}
	for _, bad := range [][]string{
		{"--bytes", "lots"},
		{"--only", "bulk,speed"},
		{"--only", ","},
		{"--rounds", "0"},
		{"--openssh-sessions", "-1"},
		{"--setup-duration", "0s"},
		{"extra"},
	} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("%v: got no error", bad)
		}
	}
}
