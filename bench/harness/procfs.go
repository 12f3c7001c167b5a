package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. The
// kernel converts to it for user space, and it is 100 on every Linux
// architecture Go supports, so sysconf(_SC_CLK_TCK) (cgo) is not needed.
const clockTicks = 100

// procStat is the part of /proc/PID/stat (proc(5)) the harness uses.
type procStat struct {
	PID   int
	PPID  int
	Comm  string
	State byte
	// UTime and STime are the process's own user and system CPU time;
	// CUTime and CSTime the times of the children it has waited for
	// (which include their waited-for children, recursively). Clock ticks.
	UTime, STime, CUTime, CSTime uint64
}

// Self returns the process's own CPU time.
func (s procStat) Self() time.Duration { return ticks(s.UTime + s.STime) }

// Total returns the process's own CPU time plus that of every descendant
// it (or they) have reaped.
func (s procStat) Total() time.Duration {
	return ticks(s.UTime + s.STime + s.CUTime + s.CSTime)
}

func ticks(n uint64) time.Duration {
	return time.Duration(n) * time.Second / clockTicks
}

// parseStat parses the contents of /proc/PID/stat. The command name is
// bracketed by the first '(' and the last ')', since it may itself contain
// spaces and parentheses.
func parseStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("parsing stat: no (comm)")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("parsing stat pid: %w", err)
	}
	// f[0] is field 3 of proc(5) (state), so field n is f[n-3].
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parsing stat of %d: %d fields after comm, want at least 15", pid, len(f))
	}
	s := procStat{PID: pid, Comm: string(b[open+1 : end]), State: f[0][0]}
	if s.PPID, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("parsing stat ppid of %d: %w", pid, err)
	}
	for i, dst := range []*uint64{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		// cutime and cstime are signed in proc(5); they are never
		// negative in practice.
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parsing stat field %d of %d: %w", 14+i, pid, err)
		}
		*dst = uint64(max(v, 0))
	}
	return s, nil
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// listProcs returns the stat of every process; processes that exit while
// they are being read are left out.
func listProcs() ([]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make([]procStat, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// descendants returns the processes of all whose parent chain leads to
// root, root excluded, parents before children.
func descendants(all []procStat, root int) []procStat {
	children := make(map[int][]procStat)
	for _, s := range all {
		if s.PID != s.PPID {
			children[s.PPID] = append(children[s.PPID], s)
		}
	}
	var out []procStat
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if seen[c.PID] {
				continue
			}
			seen[c.PID] = true
			out = append(out, c)
			queue = append(queue, c.PID)
		}
	}
	return out
}

// procTree is a process and its live descendants at one instant.
type procTree struct {
	Root  procStat
	Procs []procStat // Root first
}

// readTree reads root and its descendants.
func readTree(root int) (procTree, error) {
	all, err := listProcs()
	if err != nil {
		return procTree{}, err
	}
	for _, s := range all {
		if s.PID == root {
			return procTree{Root: s, Procs: append([]procStat{s}, descendants(all, root)...)}, nil
		}
	}
	return procTree{}, fmt.Errorf("process %d not found in /proc", root)
}

// CPU returns the CPU time of the tree: for every live process its own
// time plus that of the children it has reaped. Each CPU second is counted
// once: a process that has been reaped shows in its reaper's cutime and is
// no longer listed. It is exact when the tree is quiescent (see
// waitQuiescent); while children are being reaped one can be missed or
// counted twice.
func (t procTree) CPU() time.Duration {
	var d time.Duration
	for _, s := range t.Procs {
		d += s.Total()
	}
	return d
}

// parseKBField returns the value of a "Key:   1234 kB" line of
// /proc/PID/status or /proc/PID/smaps_rollup, in bytes. ok is false when
// the key is absent (kernel threads and zombies have no VmRSS).
func parseKBField(b []byte, key string) (n int64, ok bool, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, found := strings.Cut(sc.Text(), ":")
		if !found || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false, fmt.Errorf("parsing %s: no value", key)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("parsing %s: %w", key, err)
		}
		mult := int64(1)
		if len(f) > 1 {
			switch strings.ToLower(f[1]) {
			case "kb":
				mult = 1024
			default:
				return 0, false, fmt.Errorf("parsing %s: unit %q, want kB", key, f[1])
			}
		}
		return v * mult, true, nil
	}
	return 0, false, sc.Err()
}

// memUsage is the memory of one process or a tree, in bytes.
type memUsage struct {
	RSS int64 // VmRSS: resident pages, shared ones counted in every process
	PSS int64 // Pss: resident pages, shared ones divided among their sharers
}

// readMem reads VmRSS from /proc/PID/status and Pss from
// /proc/PID/smaps_rollup. A process without them (a zombie) counts zero.
func readMem(pid int) (memUsage, error) {
	var m memUsage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	if m.RSS, _, err = parseKBField(b, "VmRSS"); err != nil {
		return m, err
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		// Not readable for another user's process unless root.
		return m, nil
	}
	m.PSS, _, err = parseKBField(b, "Pss")
	return m, err
}

// treeMem sums readMem over root and its live descendants, and returns how
// many processes that is.
func treeMem(root int) (memUsage, int, error) {
	t, err := readTree(root)
	if err != nil {
		return memUsage{}, 0, err
	}
	var sum memUsage
	n := 0
	for _, s := range t.Procs {
		m, err := readMem(s.PID)
		if err != nil {
			continue // exited meanwhile
		}
		sum.RSS += m.RSS
		sum.PSS += m.PSS
		n++
	}
	return sum, n, nil
}

// parseMetric returns the value of an unlabelled sample name in Prometheus
// text exposition format.
func parseMetric(text, name string) (float64, bool) {
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != name {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// parseOpenFilesLimit returns the soft limit of the "Max open files" line of
// /proc/PID/limits.
func parseOpenFilesLimit(b []byte) (string, bool) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return f[0], true
			}
		}
	}
	return "", false
}
