package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// memoryMethod documents how the sessions' memory is measured.
const memoryMethod = "VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup), summed over the jump host's process tree " +
	"(the bastion: one process; OpenSSH: the listener and every per-connection sshd), read before the first session and " +
	"after the last one is established; per session = (after - before) / established. RSS counts pages shared between " +
	"sshd processes once per process, PSS divides them among the sharers, so PSS is the fair comparison. The bastion's " +
	"RSS includes garbage its Go runtime has not yet collected or returned. Goroutines come from go_goroutines on the " +
	"bastion's admin /metrics, when it serves one."

// metricsProbe reads go_goroutines from the bastion's admin endpoint.
type metricsProbe struct {
	URL string // "" when the bastion serves no /metrics
}

// goroutines returns go_goroutines, or nil when it is not available.
func (m metricsProbe) goroutines(ctx context.Context) *float64 {
	if m.URL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil
	}
	v, ok := parseMetric(string(b), "go_goroutines")
	if !ok {
		return nil
	}
	return &v
}

// openSession is an established interactive session and its route.
type openSession struct {
	conn *conn
	sess *ssh.Session
}

// established is what one establish call made: the sessions open, the
// setup time of each in ms, and the failed attempts.
type established struct {
	open       []openSession
	samples    []float64
	failures   int
	firstError string
}

// establish opens k idle interactive sessions over d, parallel at a time,
// calling attempted after each attempt. It stops early when ctx is done.
func establish(ctx context.Context, d *goDialer, k, parallel int, attempted func()) established {
	var (
		mu   sync.Mutex // protects res
		res  established
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(parallel, k) {
		wg.Go(func() {
			for next.Add(1) <= int64(k) && ctx.Err() == nil {
				t0 := time.Now()
				cn, err := d.Dial(ctx)
				var s *ssh.Session
				if err == nil {
					if s, err = openShell(cn.Client); err != nil {
						cn.Close()
					}
				}
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.failures++
					if res.firstError == "" {
						res.firstError = err.Error()
					}
				} else {
					res.open = append(res.open, openSession{cn, s})
					res.samples = append(res.samples, float64(took.Microseconds())/1000)
				}
				mu.Unlock()
				if attempted != nil {
					attempted()
				}
			}
		})
	}
	wg.Wait()
	return res
}

// closeSessions closes open in parallel, at most 256 at once: thousands of
// sequential closes would be slow through the splice.
func closeSessions(open []openSession) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range open {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			open[i].sess.Close()
			open[i].conn.Close()
		})
	}
	wg.Wait()
}

// runSessions establishes n idle interactive sessions over d, parallel at
// a time, measures the jump host (pid, its tree) before and after, and
// closes them.
func runSessions(ctx context.Context, d *goDialer, pid int, light *lightServer, metrics metricsProbe, n, parallel int, logf func(string, ...any)) (SessionsCase, error) {
	c := SessionsCase{Mode: d.Mode, Sessions: n, Parallel: parallel}
	if _, err := waitQuiescent(ctx, pid, quiesceTimeout); err != nil {
		return c, err
	}
	shellsBefore := light.Shells.Load()
	before, _, err := treeMem(pid)
	if err != nil {
		return c, err
	}
	c.RSSBefore, c.PSSBefore = before.RSS, before.PSS
	c.GoroutinesBefore = metrics.goroutines(ctx)

	var open []openSession
	defer func() { closeSessions(open) }()
	start := time.Now()
	var progress atomic.Int64
	batch := establish(ctx, d, n, parallel, func() {
		if p := progress.Add(1); p%int64(max(1, n/10)) == 0 {
			logf("sessions %s: %d/%d attempted", modeLabel[d.Mode], p, n)
		}
	})
	open = batch.open
	samples := batch.samples
	c.Failures, c.FirstError = batch.failures, batch.firstError
	c.EstablishSeconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return c, context.Cause(ctx)
	}
	c.Established = len(open)
	c.SetupSamples = samples
	c.SetupMillis = summarize(samples)

	// Every established shell reached the idle server (its reply travels
	// end to end); check it rather than assume it. Shells of failed
	// attempts may still be closing, hence the wait.
	deadline := time.Now().Add(quiesceTimeout)
	for light.Shells.Load()-shellsBefore != int64(c.Established) {
		if time.Now().After(deadline) {
			return c, fmt.Errorf("sessions %s: %d established but the upstream sees %d shells",
				modeLabel[d.Mode], c.Established, light.Shells.Load()-shellsBefore)
		}
		if err := pause(ctx); err != nil {
			return c, err
		}
	}
	after, procs, err := treeMem(pid)
	if err != nil {
		return c, err
	}
	c.Procs = procs
	c.RSSAfter, c.PSSAfter = after.RSS, after.PSS
	c.GoroutinesAfter = metrics.goroutines(ctx)
	if c.Established > 0 {
		c.RSSPerSession = float64(after.RSS-before.RSS) / float64(c.Established)
		c.PSSPerSession = float64(after.PSS-before.PSS) / float64(c.Established)
		if c.GoroutinesBefore != nil && c.GoroutinesAfter != nil {
			g := (*c.GoroutinesAfter - *c.GoroutinesBefore) / float64(c.Established)
			c.GoroutinesPerSes = &g
		}
	}
	if c.Established == 0 {
		return c, fmt.Errorf("sessions %s: none established: %s", modeLabel[d.Mode], c.FirstError)
	}
	return c, nil
}

// runSetup runs k workers that each, until dur has passed, open a route
// over d, run `true` in a session and close it; it returns the rate of
// completed sessions.
func runSetup(ctx context.Context, d *goDialer, k int, dur time.Duration) (SetupCase, error) {
	c := SetupCase{Mode: d.Mode, Concurrency: k}
	var (
		mu      sync.Mutex // protects c and samples
		samples []float64
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for range k {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				err := oneSession(ctx, d)
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					c.Failures++
					if c.FirstError == "" {
						c.FirstError = err.Error()
					}
				} else {
					c.Completed++
					samples = append(samples, float64(took.Microseconds())/1000)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return c, context.Cause(ctx)
	}
	c.Seconds = time.Since(start).Seconds()
	c.Rate = float64(c.Completed) / c.Seconds
	c.Samples = samples
	c.Millis = summarize(samples)
	if c.Completed == 0 {
		return c, fmt.Errorf("setup %s: no session completed: %s", modeLabel[d.Mode], c.FirstError)
	}
	return c, nil
}

// oneSession opens a route, runs `true` and closes the route.
func oneSession(ctx context.Context, d *goDialer) error {
	cn, err := d.Dial(ctx)
	if err != nil {
		return err
	}
	defer cn.Close()
	s, err := cn.Client.NewSession()
	if err != nil {
		return fmt.Errorf("opening session: %w", err)
	}
	defer s.Close()
	if err := s.Run("true"); err != nil {
		return fmt.Errorf("exec true: %w", err)
	}
	return nil
}
