package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{
			name: "plain",
			in:   "17236 (cat) R 17233 17233 17171 0 -1 4194304 103 0 0 0 7 3 11 2 20 0 1 0 381362 3133440 394 18446744073709551615",
			want: procStat{PID: 17236, PPID: 17233, Comm: "cat", State: 'R', UTime: 7, STime: 3, CUTime: 11, CSTime: 2},
		},
		{
			name: "comm with spaces and parentheses",
			in:   "42 (sshd: root (priv)) S 1 42 42 0 -1 4194560 1 0 0 0 120 30 4000 500 20 0 1 0 5 1 1\n",
			want: procStat{PID: 42, PPID: 1, Comm: "sshd: root (priv)", State: 'S', UTime: 120, STime: 30, CUTime: 4000, CSTime: 500},
		},
		{
			name: "negative cutime counts zero",
			in:   "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 1 1 -5 2 20 0 1 0 5",
			want: procStat{PID: 7, PPID: 1, Comm: "x", State: 'Z', UTime: 1, STime: 1, CUTime: 0, CSTime: 2},
		},
		{name: "no comm", in: "7 x R 1", wantErr: true},
		{name: "truncated", in: "7 (x) R 1 7 7 0", wantErr: true},
		{name: "bad pid", in: "x (x) R 1 7 7 0 -1 0 0 0 0 0 1 1 1 2", wantErr: true},
		{name: "bad utime", in: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 u 1 1 2", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestProcStatTimes(t *testing.T) {
	s := procStat{UTime: 150, STime: 50, CUTime: 300, CSTime: 100}
	if got, want := s.Self(), 2*time.Second; got != want {
		t.Errorf("Self: got %s, want %s", got, want)
	}
	if got, want := s.Total(), 6*time.Second; got != want {
		t.Errorf("Total: got %s, want %s", got, want)
	}
}

func TestDescendants(t *testing.T) {
	all := []procStat{
		{PID: 1, PPID: 0},
		{PID: 10, PPID: 1},  // root
		{PID: 11, PPID: 10}, // child
		{PID: 12, PPID: 11}, // grandchild
		{PID: 13, PPID: 10}, // child
		{PID: 20, PPID: 1},  // unrelated
		{PID: 21, PPID: 20},
	}
	var got []int
	for _, s := range descendants(all, 10) {
		got = append(got, s.PID)
	}
	if want := []int{11, 13, 12}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v (breadth first)", got, want)
	}
	if got := descendants(all, 12); len(got) != 0 {
		t.Errorf("leaf: got %v, want none", got)
	}
}

func TestTreeCPU(t *testing.T) {
	tr := procTree{Procs: []procStat{
		{PID: 10, UTime: 100, STime: 100, CUTime: 50, CSTime: 50}, // listener, reaped children in cutime
		{PID: 11, UTime: 30, STime: 20},                           // live connection child
	}}
	if got, want := tr.CPU(), 3500*time.Millisecond; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestParseKBField(t *testing.T) {
	status := "Name:\tcat\nVmPeak:\t    3060 kB\nVmRSS:\t    1752 kB\nThreads:\t1\n"
	tests := []struct {
		name, in, key string
		want          int64
		ok, wantErr   bool
	}{
		{"status", status, "VmRSS", 1752 * 1024, true, false},
		{"prefix is not a match", status, "VmRS", 0, false, false},
		{"count without unit", status, "Threads", 1, true, false},
		{"missing", "Name:\tkthreadd\n", "VmRSS", 0, false, false},
		{"smaps_rollup", "55-7f ---p 00000000 00:00 0   [rollup]\nRss:  1732 kB\nPss:   255 kB\n", "Pss", 255 * 1024, true, false},
		{"bad unit", "VmRSS: 12 MB\n", "VmRSS", 0, false, true},
		{"bad number", "VmRSS: x kB\n", "VmRSS", 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := parseKBField([]byte(tc.in), tc.key)
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseMetric(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 2017
go_goroutines_total{x="y"} 5
go_threads 9
process_resident_memory_bytes 2.4576e+07
`
	tests := []struct {
		name string
		want float64
		ok   bool
	}{
		{"go_goroutines", 2017, true},
		{"process_resident_memory_bytes", 24576000, true},
		{"go_gc_duration_seconds", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseMetric(text, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseOpenFilesLimit(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units\n" +
		"Max processes             unlimited            unlimited            processes\n" +
		"Max open files            20000                20000                files\n"
	if got, ok := parseOpenFilesLimit([]byte(limits)); !ok || got != "20000" {
		t.Errorf("got %q %v, want 20000", got, ok)
	}
	if _, ok := parseOpenFilesLimit([]byte("Max processes 1 1\n")); ok {
		t.Error("got a limit from a file without one")
	}
}

// TestReadSelf checks the /proc readers against this process.
func TestReadSelf(t *testing.T) {
	s, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() {
		t.Errorf("got pid %d ppid %d, want %d %d", s.PID, s.PPID, os.Getpid(), os.Getppid())
	}
	tr, err := readTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Root.PID != os.Getpid() || tr.Procs[0].PID != os.Getpid() {
		t.Errorf("got root %d, want %d first", tr.Root.PID, os.Getpid())
	}
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 {
		t.Errorf("got RSS %d, want > 0", m.RSS)
	}
}
