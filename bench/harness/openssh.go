package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cpuMethod documents how the jump host's CPU time is measured.
const cpuMethod = "utime+stime+cutime+cstime from /proc/PID/stat, summed over the jump host's process and its live descendants, " +
	"read before and after each transfer once the tree is quiescent. For the bastion that is its one process. " +
	"For OpenSSH it is the sshd listener after every per-connection child (the re-executed sshd, its privilege-separated " +
	"children) has exited and been reaped: each sshd waits for its children, so their CPU time has been added to the " +
	"listener's cutime/cstime, and nothing is missed between samples (sampling a live tree would miss the CPU of " +
	"processes that exit and are reaped between samples). Resolution is one clock tick (10 ms) per process. " +
	"Each transfer includes one connection setup (see the jump host's CPU per connect under latency), " +
	"which matters for small --bytes. Upstream sshd and client CPU are not counted."

// opensshClient runs the OpenSSH client with the generated ssh_config.
type opensshClient struct {
	Bin    string
	Config string
	OSUser string
}

// args returns the ssh arguments that reach the upstream sshd by mode;
// target names the bastion target (targetStatic or targetLightsail) and
// is ignored for modeOpenSSH.
func (c *opensshClient) args(mode, target string) []string {
	base := []string{"-F", c.Config}
	switch mode {
	case modeNone:
		return append(base, "upstream")
	case modeOpenSSH:
		return append(base, "-J", "jump", "upstream")
	case modeBastionJump:
		return append(base, "-J", "bastion", c.OSUser+"@"+target)
	default:
		return append(base, "-l", c.OSUser+"+"+target, "bastion")
	}
}

// run runs ssh to mode/target with remote command remote, stdin from
// /dev/null (or the output of `head -c upBytes /dev/zero` if upBytes > 0)
// and stdout to /dev/null (or captured if capture). It returns the wall
// time from start to exit.
func (c *opensshClient) run(ctx context.Context, mode, target, remote string, upBytes int64, capture bool, timeout time.Duration) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(c.args(mode, target), remote)
	var cmd *exec.Cmd
	if upBytes > 0 {
		// As a person would: head -c N /dev/zero | ssh … 'cat > /dev/null'.
		script := `n=$1; shift; head -c "$n" /dev/zero | "$@"`
		cmd = command(ctx, "sh", append([]string{"-c", script, "sh", strconv.FormatInt(upBytes, 10), c.Bin}, args...)...)
	} else {
		cmd = command(ctx, c.Bin, args...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	if capture {
		cmd.Stdout = &stdout
	} else {
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, "", err
		}
		defer devnull.Close()
		cmd.Stdout = devnull // an *os.File: ssh writes to it directly
	}
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil && err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return took, "", fmt.Errorf("ssh %s: no answer in %s; stderr: %s", strings.Join(args, " "), timeout, strings.TrimSpace(stderr.String()))
		}
		return took, "", context.Cause(ctx)
	}
	if err != nil {
		return took, "", fmt.Errorf("ssh %s: %v; stderr: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return took, stdout.String(), nil
}

// jumpMeter reads the CPU time of the jump host of a mode: from its
// cgroup when it has one, else from /proc.
type jumpMeter struct {
	sshdPID    int // the jump sshd listener
	bastionPID int
	// sshdGroup and bastionGroup are the jump hosts' cgroups, or nil.
	sshdGroup, bastionGroup *cpuGroup
}

// method documents how m measures.
func (m jumpMeter) method() string {
	if m.sshdGroup != nil && m.bastionGroup != nil {
		return cgroupMethod
	}
	return cpuMethod
}

// cpu returns the CPU time so far of mode's jump host, once its tree is
// quiescent.
func (m jumpMeter) cpu(ctx context.Context, mode string) (time.Duration, error) {
	pid := m.bastionPID
	if mode == modeOpenSSH {
		pid = m.sshdPID
	}
	t, err := waitQuiescent(ctx, pid, quiesceTimeout)
	if err != nil {
		return 0, err
	}
	g := m.bastionGroup
	if mode == modeOpenSSH {
		g = m.sshdGroup
	}
	if m.sshdGroup != nil && m.bastionGroup != nil {
		return g.cpu()
	}
	return t.CPU(), nil
}

// runBulk measures throughput and jump host CPU, rounds times per mode and
// direction, rotating the order of the modes each round.
func runBulk(ctx context.Context, c *opensshClient, meter jumpMeter, size int64, rounds int, logf func(string, ...any)) (*BulkResult, error) {
	res := &BulkResult{CPUMethod: meter.method()}
	timeout := 60*time.Second + time.Duration(size/(1<<20))*time.Second // ≥1 MiB/s or it is broken
	for r := range rounds {
		for _, mode := range rotate(allModes, r) {
			for _, dir := range []string{"down", "up"} {
				before, err := meter.cpu(ctx, mode)
				if err != nil {
					return res, err
				}
				var took time.Duration
				if dir == "down" {
					took, _, err = c.run(ctx, mode, targetStatic, fmt.Sprintf("head -c %d /dev/zero", size), 0, false, timeout)
				} else {
					took, _, err = c.run(ctx, mode, targetStatic, "cat > /dev/null", size, false, timeout)
				}
				if err != nil {
					return res, fmt.Errorf("bulk %s %s: %w", modeLabel[mode], dir, err)
				}
				after, err := meter.cpu(ctx, mode)
				if err != nil {
					return res, err
				}
				s := BulkSample{Round: r, Mode: mode, Direction: dir, Bytes: size, Seconds: took.Seconds(),
					MBps: float64(size) / 1e6 / took.Seconds(), JumpCPUSeconds: (after - before).Seconds()}
				s.CPUPerGiB = s.JumpCPUSeconds / (float64(size) / (1 << 30))
				res.Samples = append(res.Samples, s)
				logf("bulk round %d %s %s: %.0f MB/s, jump host CPU %.2fs", r+1, modeLabel[mode], dir, s.MBps, s.JumpCPUSeconds)
			}
		}
	}
	res.Stats = bulkStats(res.Samples)
	return res, nil
}

// bulkStats summarises samples per mode and direction, with the medians'
// ratios to modeOpenSSH.
func bulkStats(samples []BulkSample) []BulkStats {
	var out []BulkStats
	for _, dir := range []string{"down", "up"} {
		var base BulkStats
		for _, mode := range allModes {
			var mbps, cpu []float64
			for _, s := range samples {
				if s.Mode == mode && s.Direction == dir {
					mbps = append(mbps, s.MBps)
					cpu = append(cpu, s.CPUPerGiB)
				}
			}
			if len(mbps) == 0 {
				continue
			}
			st := BulkStats{Mode: mode, Direction: dir, MBps: summarize(mbps), CPUPerGiB: summarize(cpu)}
			if mode == modeOpenSSH {
				base = st
			}
			if base.MBps.N > 0 {
				st.MBpsRatio = ratio(st.MBps.Median, base.MBps.Median)
				st.CPURatio = ratio(st.CPUPerGiB.Median, base.CPUPerGiB.Median)
			}
			out = append(out, st)
		}
	}
	return out
}

// latencyCase is a way of connecting for runLatency.
type latencyCase struct {
	name   string
	mode   string
	target string
	cached bool
}

var latencyCases = []latencyCase{
	{"(a) OpenSSH -J", modeOpenSSH, "", true},
	{"(b) bastion -J, static (cached)", modeBastionJump, targetStatic, true},
	{"(c) bastion direct, static (cached)", modeBastionDirect, targetStatic, true},
	{"(b) bastion -J, Lightsail uncached", modeBastionJump, targetLightsail, false},
	{"(c) bastion direct, Lightsail uncached", modeBastionDirect, targetLightsail, false},
	{"no jump host (floor): ssh upstream", modeNone, "", true},
}

// awsCounter reports how many calls the AWS fake has had for an operation.
type awsCounter func(op string) int

// runLatency times `ssh … true` n times per case, interleaving the cases
// and rotating their order every connect.
//
// It also reads the jump host's CPU time before and after every connect
// (see cpuMethod), which costs quiescence waits outside the timed part.
func runLatency(ctx context.Context, c *opensshClient, meter jumpMeter, n int, calls awsCounter, logf func(string, ...any)) (*LatencyResult, error) {
	res := &LatencyResult{}
	for _, lc := range latencyCases {
		res.Cases = append(res.Cases, LatencyCase{Name: lc.name, Mode: lc.mode, Target: lc.target, Cached: lc.cached, AWSCalls: map[string]int{}})
	}
	idx := make([]int, len(latencyCases))
	for i := range idx {
		idx[i] = i
	}
	ops := []string{"GetInstance", "GetInstanceAccessDetails"}
	for i := range n {
		for _, k := range rotate(idx, i) {
			lc, out := latencyCases[k], &res.Cases[k]
			before := make(map[string]int)
			for _, op := range ops {
				before[op] = calls(op)
			}
			var cpuBefore time.Duration
			if lc.mode != modeNone {
				var err error
				if cpuBefore, err = meter.cpu(ctx, lc.mode); err != nil {
					return res, err
				}
			}
			took, _, err := c.run(ctx, lc.mode, lc.target, "true", 0, false, 60*time.Second)
			for _, op := range ops {
				out.AWSCalls[op] += calls(op) - before[op]
			}
			if lc.mode != modeNone {
				cpuAfter, cerr := meter.cpu(ctx, lc.mode)
				if cerr != nil {
					return res, cerr
				}
				if err == nil {
					out.CPUMillis = append(out.CPUMillis, float64((cpuAfter-cpuBefore).Microseconds())/1000)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return res, context.Cause(ctx)
				}
				out.Failures++
				if out.FirstError == "" {
					out.FirstError = err.Error()
				}
				continue
			}
			out.Millis = append(out.Millis, float64(took.Microseconds())/1000)
		}
		if (i+1)%max(1, n/10) == 0 {
			logf("latency: %d/%d connects per case", i+1, n)
		}
	}
	var base, baseCPU Summary // of (a), the first case
	for k := range res.Cases {
		cs := &res.Cases[k]
		cs.Summary = summarize(cs.Millis)
		cs.CPU = summarize(cs.CPUMillis)
		if k == 0 {
			base, baseCPU = cs.Summary, cs.CPU
		}
		if cs.Summary.N > 0 && base.N > 0 {
			cs.P50Ratio = ratio(cs.Summary.Median, base.Median)
			cs.P99Ratio = ratio(cs.Summary.P99, base.P99)
		}
		if cs.CPU.N > 0 && baseCPU.N > 0 {
			cs.CPURatio = ratio(cs.CPU.Mean, baseCPU.Mean)
		}
		if cs.Summary.N == 0 {
			return res, fmt.Errorf("latency %s: every connect failed: %s", cs.Name, cs.FirstError)
		}
	}
	return res, nil
}
