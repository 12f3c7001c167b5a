package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
)

// The hostile CloudWatch cases: CloudWatch Logs failing or hanging, with
// audit.on_failure refuse (the default).

// msgCloudWatchRefused is the reason a person is given while the audit
// events cannot be delivered: the same refusal as for an audit log that
// cannot be written. Depending on where the login is when the sink goes
// down (outer login, jump channel, inner login) the bastion's line is
// "bastion: REASON" or "bastion: TARGET: REASON".
const msgCloudWatchRefused = "the audit log cannot be written; refusing the connection"

// TestHostileCloudWatchDownRefusesLogins: while PutLogEvents fails, new
// logins are refused with a one-line reason on ssh's stderr and a live
// session is ended with one, as when audit.log cannot be written, and
// /readyz says why the replica is not ready; once
// CloudWatch answers again logins work, and the stream ends up holding
// every line of audit.log in order, the ones written during the outage
// included.
func TestHostileCloudWatchDownRefusesLogins(t *testing.T) {
	w := newCloudWatchWorld(t, "", "limits: {aws_timeout: 2s}\n")
	if r := w.run(t, "echo before"); r.Code != 0 || r.Stdout != "before\n" {
		t.Fatalf("ssh before the outage: got exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	live := startProcess(t, exec.Command("ssh", "-F", w.bob.ConfigPath, "-J", "bastion", w.me+"@web-1", "while :; do echo tick; sleep 0.2; done"))
	waitFor(t, "ticks of the live session", 30*time.Second, func() bool { return strings.Count(live.out.String(), "tick") >= 2 })
	w.fake.SetFault("PutLogEvents", awsfake.Fault{ErrorCode: "ServiceUnavailableException"})
	var refused result
	waitFor(t, "a login refused while CloudWatch fails", 60*time.Second, func() bool {
		// A login that got in before the sink was down is ended as a
		// live link ("…; closing"); the next one is refused.
		refused = w.run(t, "echo during")
		return refused.Code != 0 && strings.Contains(refused.Stderr, msgCloudWatchRefused)
	})
	if strings.Contains(refused.Stdout, "during") || !strings.Contains(refused.Stderr, msgCloudWatchRefused) {
		t.Fatalf("login during the outage: got exit %d, stdout %q, stderr %q; want it refused with %q", refused.Code, refused.Stdout, refused.Stderr, msgCloudWatchRefused)
	}
	var reasons []string
	for _, line := range strings.Split(strings.TrimSpace(refused.Stderr), "\n") {
		// OpenSSH may put its own words before the bastion's
		// ("channel 0: open failed: connect failed: bastion: …").
		if strings.Contains(line, "bastion: ") {
			reasons = append(reasons, strings.TrimSpace(line))
		}
	}
	if len(reasons) != 1 || !strings.HasSuffix(reasons[0], msgCloudWatchRefused) {
		t.Errorf("ssh stderr %q: the bastion said %q; want one line with the reason", refused.Stderr, reasons)
	}
	// The live session is ended as for an audit log that cannot be
	// written, with its own one-line reason.
	select {
	case <-live.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the live session was not ended while CloudWatch fails")
	}
	if out := live.out.String(); !strings.Contains(out, "bastion: the audit log cannot be written; closing") {
		t.Errorf("live session's output: %q; want the closing reason", out)
	}
	if m := scrape(t, w.admin); m["bastion_audit_cloudwatch_failures_total"] < 3 || m["bastion_audit_write_failures_total{what=\"audit_log\"}"] < 1 {
		t.Errorf("metrics: cloudwatch failures %v, audit write failures %v; want at least 3 and 1",
			m["bastion_audit_cloudwatch_failures_total"], m["bastion_audit_write_failures_total{what=\"audit_log\"}"])
	}

	if code, body := readyz(t, w.admin); code != 503 || !strings.Contains(body, "audit.cloudwatch: audit events cannot be delivered to CloudWatch Logs") {
		t.Errorf("/readyz while CloudWatch fails: got %d %q, want 503 naming audit.cloudwatch", code, body)
	}

	w.fake.ClearFaults()
	waitFor(t, "logins again once CloudWatch answers", 60*time.Second, func() bool {
		r := w.run(t, "echo after")
		return r.Code == 0 && r.Stdout == "after\n"
	})
	if code, body := readyz(t, w.admin); code != 200 || !strings.Contains(body, "audit.cloudwatch: ok") {
		t.Errorf("/readyz once CloudWatch answers: got %d %q, want 200 and audit.cloudwatch ok", code, body)
	}
	w.stop(t, 60*time.Second)
	file := w.b.AuditLines(t)
	remote := readCloudWatch(t, w.fake)
	if !slices.Equal(remote, file) {
		t.Fatalf("CloudWatch holds %d lines, audit.log %d; want the same lines, the outage's included", len(remote), len(file))
	}
	checkSeq(t, remote, 1)
}

// TestHostileCloudWatchHangBounded: a CloudWatch that never answers does not
// hang the bastion. Each call is abandoned at its deadline (aws_timeout) and
// retried, logins are then refused at once with the reason, and SIGTERM
// ends the bastion within the flush deadline (drain_timeout), saying how
// many events it could not deliver.
func TestHostileCloudWatchHangBounded(t *testing.T) {
	w := newCloudWatchWorld(t, "", "limits: {aws_timeout: 1s, drain_timeout: 3s}\n")
	w.fake.SetFault("PutLogEvents", awsfake.Fault{Hang: true})
	// Each hung call ends at its deadline and a new one starts: calls
	// keep arriving, and none was answered.
	waitFor(t, "three PutLogEvents calls, each abandoned at its deadline", 60*time.Second, func() bool {
		n := 0
		for _, c := range w.fake.Calls() {
			if c.Operation == "PutLogEvents" && c.Status == 0 {
				n++
			}
		}
		return n >= 3
	})
	var r result
	waitFor(t, "a login refused while CloudWatch hangs", 60*time.Second, func() bool {
		start := time.Now()
		r = w.run(t, "echo during")
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("a login while CloudWatch hangs took %s", d)
		}
		return r.Code != 0 && strings.Contains(r.Stderr, msgCloudWatchRefused)
	})
	if !strings.Contains(r.Stderr, msgCloudWatchRefused) {
		t.Fatalf("login while CloudWatch hangs: got exit %d, stderr %q; want %q", r.Code, r.Stderr, msgCloudWatchRefused)
	}
	start := time.Now()
	w.stop(t, 30*time.Second)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the bastion took %s to stop with CloudWatch hanging; want about drain_timeout (3s) twice at most", d)
	}
	if out := w.b.proc.out.String(); !strings.Contains(out, "events not delivered") {
		t.Errorf("the bastion's output does not say how many events were not delivered:\n%s", out)
	}
}

// TestHostileCloudWatchOutageFailOpen: with on_failure continue, logins go
// on while CloudWatch fails; the buffer stays within max_buffer_events,
// the oldest events are dropped and counted (metric and warning), and once
// CloudWatch answers the stream receives the newest events in order, seq
// continuous, the same as the end of audit.log.
func TestHostileCloudWatchOutageFailOpen(t *testing.T) {
	const bound = 20
	w := newCloudWatchWorld(t, "    max_buffer_events: 20\n  on_failure: continue", "limits: {aws_timeout: 2s}\n")
	waitFor(t, "the start checkpoint in CloudWatch", 30*time.Second, func() bool {
		return len(w.fake.LogEvents(region, cwGroup, cwStream)) > 0
	})
	w.fake.SetFault("PutLogEvents", awsfake.Fault{ErrorCode: "ServiceUnavailableException"})
	before := len(w.b.AuditLines(t))
	for i := 0; len(w.b.AuditLines(t)) < before+3*bound; i++ {
		if i == 50 {
			t.Fatalf("50 logins wrote only %d audit lines", len(w.b.AuditLines(t))-before)
		}
		if r := w.run(t, "echo open"); r.Code != 0 || r.Stdout != "open\n" {
			t.Fatalf("ssh %d while CloudWatch fails, failing open: got exit %d %q %q", i, r.Code, r.Stdout, r.Stderr)
		}
		if m := scrape(t, w.admin); m["bastion_audit_cloudwatch_buffered_events"] > bound {
			t.Fatalf("buffered gauge %v, over max_buffer_events %d", m["bastion_audit_cloudwatch_buffered_events"], bound)
		}
	}
	m := scrape(t, w.admin)
	if m["bastion_audit_cloudwatch_dropped_total"] < bound || m["bastion_audit_cloudwatch_failures_total"] < 1 {
		t.Fatalf("metrics: dropped %v, failures %v; want at least %d dropped and some failures",
			m["bastion_audit_cloudwatch_dropped_total"], m["bastion_audit_cloudwatch_failures_total"], bound)
	}
	waitFor(t, "the drop warning in the bastion's log", 30*time.Second, func() bool {
		return strings.Contains(w.b.proc.out.String(), "audit_cloudwatch_dropped")
	})
	delivered := len(w.fake.LogEvents(region, cwGroup, cwStream))

	w.fake.ClearFaults()
	waitFor(t, "the buffer to drain once CloudWatch answers", 60*time.Second, func() bool {
		return scrape(t, w.admin)["bastion_audit_cloudwatch_buffered_events"] == 0
	})
	file := w.b.AuditLines(t)
	remote := readCloudWatch(t, w.fake)
	// What was delivered before the outage, then the newest lines.
	resumed := remote[delivered:]
	if len(resumed) == 0 || len(resumed) > bound+5 {
		t.Fatalf("after the outage %d lines arrived; want the buffered ones, at most about %d", len(resumed), bound)
	}
	at := slices.Index(file, resumed[0])
	if at < before || !slices.Equal(resumed, file[at:at+len(resumed)]) {
		t.Fatalf("the lines delivered after the outage are not a run of audit.log's newest lines (first at index %d)", at)
	}
	checkSeq(t, resumed, int64(at+1))
}
