package main

import (
	"context"
	"fmt"
	"time"
)

// ScaleResult is the scale measurement: idle sessions established on one
// bastion in steps up to --scale, with the bastion's memory and the setup
// rate after each step.
type ScaleResult struct {
	Mode     string      `json:"mode"`
	Target   int         `json:"target"`
	Step     int         `json:"step"`
	Parallel int         `json:"parallel"`
	Before   ScalePoint  `json:"before"`
	Steps    []ScaleStep `json:"steps"`
	// RSSFit is the least-squares line of RSS against sessions over the
	// steps, with its R².
	RSSFit LinearFit `json:"rss_fit"`
	PSSFit LinearFit `json:"pss_fit"`
	// RateFirst is the setup rate of the step ending at or after 1,000
	// sessions (the first step when --scale is smaller), RateLast that of
	// the last step; RateRatio is RateLast / RateFirst.
	RateFirst   float64 `json:"rate_first_per_s"`
	RateFirstAt int     `json:"rate_first_at"`
	RateLast    float64 `json:"rate_last_per_s"`
	RateRatio   float64 `json:"rate_ratio"`
	// RateEarly and RateLate smooth a shared machine's noise: the mean
	// rate of the three steps around RateFirstAt, and of the last three.
	RateEarly     float64 `json:"rate_early_per_s"`
	RateLate      float64 `json:"rate_late_per_s"`
	RateSmoothed  float64 `json:"rate_smoothed_ratio"`
	Failures      int     `json:"failures"`
	FirstError    string  `json:"first_error,omitempty"`
	BastionNofile string  `json:"bastion_open_files_limit"`
}

// ScalePoint is the bastion's memory with some sessions open.
type ScalePoint struct {
	Sessions   int      `json:"sessions"`
	RSS        int64    `json:"rss_bytes"`
	PSS        int64    `json:"pss_bytes"`
	Goroutines *float64 `json:"goroutines,omitempty"`
}

// ScaleStep is one step: the sessions it added, how long they took, and
// the bastion afterwards.
type ScaleStep struct {
	ScalePoint
	Added   int       `json:"added"`
	Seconds float64   `json:"seconds"`
	Rate    float64   `json:"rate_per_s"`
	SetupMS Summary   `json:"setup_ms"`
	Samples []float64 `json:"setup_samples_ms"`
}

// LinearFit is y = Intercept + Slope·x by least squares, and R².
type LinearFit struct {
	Slope     float64 `json:"slope"`
	Intercept float64 `json:"intercept"`
	R2        float64 `json:"r2"`
}

// fitLine fits y against x by least squares.
func fitLine(x, y []float64) LinearFit {
	n := float64(len(x))
	if len(x) < 2 || len(x) != len(y) {
		return LinearFit{}
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return LinearFit{}
	}
	slope := (n*sxy - sx*sy) / den
	icpt := (sy - slope*sx) / n
	mean := sy / n
	var ssRes, ssTot float64
	for i := range x {
		r := y[i] - (icpt + slope*x[i])
		ssRes += r * r
		d := y[i] - mean
		ssTot += d * d
	}
	r2 := 1.0
	if ssTot > 0 {
		r2 = 1 - ssRes/ssTot
	}
	return LinearFit{Slope: slope, Intercept: icpt, R2: r2}
}

// runScale establishes up to target idle interactive sessions over d, step
// at a time, parallel at once, and reads the bastion (pid) after each
// step. Every session stays open until the end.
func runScale(ctx context.Context, d *goDialer, pid int, light *lightServer, metrics metricsProbe, target, step, parallel int, logf func(string, ...any)) (ScaleResult, error) {
	res := ScaleResult{Mode: d.Mode, Target: target, Step: step, Parallel: parallel}
	if _, err := waitQuiescent(ctx, pid, quiesceTimeout); err != nil {
		return res, err
	}
	shellsBefore := light.Shells.Load()
	m, _, err := treeMem(pid)
	if err != nil {
		return res, err
	}
	res.Before = ScalePoint{RSS: m.RSS, PSS: m.PSS, Goroutines: metrics.goroutines(ctx)}

	var open []openSession
	defer func() { closeSessions(open) }()
	for len(open) < target {
		k := min(step, target-len(open))
		start := time.Now()
		batch := establish(ctx, d, k, parallel, nil)
		open = append(open, batch.open...)
		samples := batch.samples
		res.Failures += batch.failures
		if res.FirstError == "" {
			res.FirstError = batch.firstError
		}
		secs := time.Since(start).Seconds()
		if err := ctx.Err(); err != nil {
			return res, context.Cause(ctx)
		}
		if len(samples) == 0 {
			return res, fmt.Errorf("scale %s: no session established in the step after %d: %s", modeLabel[d.Mode], len(open), res.FirstError)
		}
		// Every shell reached the idle server before memory is read.
		deadline := time.Now().Add(quiesceTimeout)
		for light.Shells.Load()-shellsBefore < int64(len(open)) {
			if time.Now().After(deadline) {
				return res, fmt.Errorf("scale %s: %d established but the upstream sees %d shells", modeLabel[d.Mode], len(open), light.Shells.Load()-shellsBefore)
			}
			if err := pause(ctx); err != nil {
				return res, err
			}
		}
		m, _, err := treeMem(pid)
		if err != nil {
			return res, err
		}
		st := ScaleStep{ScalePoint: ScalePoint{Sessions: len(open), RSS: m.RSS, PSS: m.PSS, Goroutines: metrics.goroutines(ctx)},
			Added: len(samples), Seconds: secs, Rate: float64(len(samples)) / secs, SetupMS: summarize(samples), Samples: samples}
		res.Steps = append(res.Steps, st)
		logf("scale %s: %d sessions, RSS %s MiB, %.0f sessions/s in this step", modeLabel[d.Mode], st.Sessions, mib(float64(st.RSS)), st.Rate)
		if res.Failures > target/100+10 {
			return res, fmt.Errorf("scale %s: %d failures (first: %s)", modeLabel[d.Mode], res.Failures, res.FirstError)
		}
	}
	var xs, rss, pss []float64
	for _, s := range res.Steps {
		xs = append(xs, float64(s.Sessions))
		rss = append(rss, float64(s.RSS))
		pss = append(pss, float64(s.PSS))
	}
	res.RSSFit, res.PSSFit = fitLine(xs, rss), fitLine(xs, pss)
	rateRatios(&res)
	return res, nil
}

// rateRatios fills in the setup rates at 1,000 sessions and at the end.
func rateRatios(res *ScaleResult) {
	if len(res.Steps) == 0 {
		return
	}
	fi := 0
	for i, s := range res.Steps {
		if s.Sessions >= 1000 {
			fi = i
			break
		}
	}
	first, last := res.Steps[fi], res.Steps[len(res.Steps)-1]
	res.RateFirst, res.RateFirstAt, res.RateLast = first.Rate, first.Sessions, last.Rate
	if first.Rate > 0 {
		res.RateRatio = last.Rate / first.Rate
	}
	mean := func(steps []ScaleStep) float64 {
		var sum float64
		for _, s := range steps {
			sum += s.Rate
		}
		return sum / float64(len(steps))
	}
	res.RateEarly = mean(res.Steps[max(0, fi-1):min(len(res.Steps), fi+2)])
	res.RateLate = mean(res.Steps[max(0, len(res.Steps)-3):])
	if res.RateEarly > 0 {
		res.RateSmoothed = res.RateLate / res.RateEarly
	}
}

// renderScale renders the scale measurement.
func renderScale(s *ScaleResult) string {
	var rows [][]string
	for _, st := range s.Steps {
		gor := "n/a"
		if st.Goroutines != nil && s.Before.Goroutines != nil && st.Sessions > 0 {
			gor = fmt.Sprintf("%.1f", (*st.Goroutines-*s.Before.Goroutines)/float64(st.Sessions))
		}
		rows = append(rows, []string{fmt.Sprint(st.Sessions), mib(float64(st.RSS)), mib(float64(st.PSS)),
			kib(float64(st.RSS-s.Before.RSS) / float64(st.Sessions)), gor,
			fmt.Sprintf("%.1f", st.Rate), fmt.Sprintf("%.1f", st.SetupMS.Median), fmt.Sprintf("%.1f", st.SetupMS.P99)})
	}
	out := fmt.Sprintf("## Scale: idle interactive sessions on one bastion, %s, up to %d in steps of %d (%d being established at once)\n\n",
		modeLabel[s.Mode], s.Target, s.Step, s.Parallel)
	out += renderTable([]string{"sessions", "RSS MiB", "PSS MiB", "RSS KiB/session (from start)", "goroutines/session", "step setup rate /s", "setup p50 ms", "setup p99 ms"}, rows)
	out += fmt.Sprintf("\nRSS before: %s MiB. Linear fit of RSS against sessions: %.1f KiB/session, intercept %s MiB, R² %.4f (PSS: %.1f KiB/session, R² %.4f). "+
		"Setup rate at %d sessions: %.1f/s, at %d: %.1f/s (%.2fx); mean of the three steps around %d against the last three: %.1f/s, %.1f/s (%.2fx). Failures: %d. RLIMIT_NOFILE of the bastion: %s.\n\n",
		mib(float64(s.Before.RSS)), s.RSSFit.Slope/1024, mib(s.RSSFit.Intercept), s.RSSFit.R2, s.PSSFit.Slope/1024, s.PSSFit.R2,
		s.RateFirstAt, s.RateFirst, s.Target, s.RateLast, s.RateRatio, s.RateFirstAt, s.RateEarly, s.RateLate, s.RateSmoothed, s.Failures, s.BastionNofile)
	if s.FirstError != "" {
		out += "First failure: " + s.FirstError + "\n\n"
	}
	return out
}
