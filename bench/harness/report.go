package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The three routes compared.
const (
	modeOpenSSH       = "a" // OpenSSH sshd as the ProxyJump host
	modeBastionJump   = "b" // the bastion via ProxyJump
	modeBastionDirect = "c" // the bastion in direct mode
	modeNone          = "0" // straight to the upstream, the floor
)

// allModes is the A/B/C order of round 0.
var allModes = []string{modeOpenSSH, modeBastionJump, modeBastionDirect}

// modeLabel names a mode in tables.
var modeLabel = map[string]string{
	modeOpenSSH:       "(a) OpenSSH -J",
	modeBastionJump:   "(b) bastion -J",
	modeBastionDirect: "(c) bastion direct",
}

// Report is everything one run measured; it is written as JSON and
// rendered as markdown.
type Report struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Machine  Machine           `json:"machine"`
	Versions Versions          `json:"versions"`
	Params   Params            `json:"params"`
	Modes    map[string]string `json:"modes"`
	Bulk     *BulkResult       `json:"bulk,omitempty"`
	Latency  *LatencyResult    `json:"latency,omitempty"`
	Sessions *SessionsResult   `json:"sessions,omitempty"`
	Setup    *SetupResult      `json:"setup,omitempty"`
	Scale    []ScaleResult     `json:"scale,omitempty"`
	// Error is why the run stopped early, if it did.
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUModel      string `json:"cpu_model"`
	Cores         int    `json:"cores"`
	Kernel        string `json:"kernel"`
	MemTotalBytes int64  `json:"mem_total_bytes"`
	LoadAvgStart  string `json:"loadavg_start"`
	LoadAvgEnd    string `json:"loadavg_end"`
	// OpenFiles is RLIMIT_NOFILE as the bastion saw it.
	OpenFiles string `json:"open_files_limit"`
}

// Versions of what was compared.
type Versions struct {
	Go             string `json:"go"`
	OpenSSH        string `json:"openssh"`
	BastionCommit  string `json:"bastion_commit"`
	BastionDirty   bool   `json:"bastion_dirty"`
	BastionVersion string `json:"bastion_version"`
}

// Params are the run's flags.
type Params struct {
	Bytes             int64    `json:"bytes"`
	Rounds            int      `json:"rounds"`
	Connects          int      `json:"connects"`
	Sessions          int      `json:"sessions"`
	OpenSSHSessions   int      `json:"openssh_sessions"`
	EstablishParallel int      `json:"establish_parallel"`
	SetupConcurrency  int      `json:"setup_concurrency"`
	SetupDuration     string   `json:"setup_duration"`
	AWSLatency        string   `json:"aws_latency"`
	Ciphers           string   `json:"ciphers,omitempty"`
	Only              []string `json:"only"`
	// Pin is --pin: the jump host on CPU 0, everything else on CPU 1.
	Pin bool `json:"pin,omitempty"`
	// Record is --record: sessions recorded, plain or age-encrypted.
	Record string `json:"record,omitempty"`
	// Scale, ScaleStep and ScaleRoutes are --scale, --scale-step and
	// --scale-route, for the scale measurement.
	Scale       int      `json:"scale,omitempty"`
	ScaleStep   int      `json:"scale_step,omitempty"`
	ScaleRoutes []string `json:"scale_routes,omitempty"`
}

// BulkResult is measurement 1 and 2.
type BulkResult struct {
	CPUMethod string       `json:"cpu_method"`
	Samples   []BulkSample `json:"samples"`
	Stats     []BulkStats  `json:"stats"`
}

// BulkSample is one transfer.
type BulkSample struct {
	Round     int     `json:"round"`
	Mode      string  `json:"mode"`
	Direction string  `json:"direction"` // "down" or "up"
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	MBps      float64 `json:"mb_per_s"` // 10^6 bytes per second
	// JumpCPUSeconds is the CPU time the jump host (the bastion process,
	// or every process of the jump sshd) spent during the transfer.
	JumpCPUSeconds float64 `json:"jump_cpu_seconds"`
	CPUPerGiB      float64 `json:"jump_cpu_seconds_per_gib"`
}

// BulkStats summarises one mode and direction.
type BulkStats struct {
	Mode      string   `json:"mode"`
	Direction string   `json:"direction"`
	MBps      Summary  `json:"mb_per_s"`
	CPUPerGiB Summary  `json:"jump_cpu_seconds_per_gib"`
	MBpsRatio *float64 `json:"mb_per_s_median_ratio_to_a"`
	CPURatio  *float64 `json:"cpu_per_gib_median_ratio_to_a"`
}

// LatencyResult is measurement 3.
type LatencyResult struct {
	Cases []LatencyCase `json:"cases"`
}

// LatencyCase is one way of connecting, timed over many connects.
type LatencyCase struct {
	Name     string    `json:"name"`
	Mode     string    `json:"mode"`
	Target   string    `json:"target"`
	Cached   bool      `json:"cached"`
	Millis   []float64 `json:"samples_ms"`
	Summary  Summary   `json:"summary_ms"`
	Failures int       `json:"failures"`
	// FirstError is the stderr of the first failed connect.
	FirstError string   `json:"first_error,omitempty"`
	P50Ratio   *float64 `json:"p50_ratio_to_a"`
	P99Ratio   *float64 `json:"p99_ratio_to_a"`
	// AWSCalls counts the fake's calls by operation during this case's
	// connects.
	AWSCalls map[string]int `json:"aws_calls,omitempty"`
	// CPUMillis is the jump host's CPU time per successful connect (none
	// for the case without a jump host). Samples are multiples of a clock
	// tick (10 ms), so the mean is the useful figure.
	CPUMillis []float64 `json:"jump_cpu_samples_ms,omitempty"`
	CPU       Summary   `json:"jump_cpu_ms"`
	CPURatio  *float64  `json:"jump_cpu_mean_ratio_to_a"`
}

// SessionsResult is measurement 4.
type SessionsResult struct {
	// MemoryMethod says how memory was read.
	MemoryMethod string         `json:"memory_method"`
	Cases        []SessionsCase `json:"cases"`
}

// SessionsCase is N idle interactive sessions over one route.
type SessionsCase struct {
	Mode        string `json:"mode"`
	Sessions    int    `json:"sessions"`
	Established int    `json:"established"`
	Failures    int    `json:"failures"`
	FirstError  string `json:"first_error,omitempty"`
	// EstablishSeconds is the wall time to establish them all, Parallel
	// at a time.
	EstablishSeconds float64   `json:"establish_seconds"`
	Parallel         int       `json:"parallel"`
	SetupMillis      Summary   `json:"setup_ms"`
	Procs            int       `json:"jump_procs_after"`
	RSSBefore        int64     `json:"rss_before_bytes"`
	RSSAfter         int64     `json:"rss_after_bytes"`
	PSSBefore        int64     `json:"pss_before_bytes"`
	PSSAfter         int64     `json:"pss_after_bytes"`
	RSSPerSession    float64   `json:"rss_per_session_bytes"`
	PSSPerSession    float64   `json:"pss_per_session_bytes"`
	GoroutinesBefore *float64  `json:"goroutines_before,omitempty"`
	GoroutinesAfter  *float64  `json:"goroutines_after,omitempty"`
	GoroutinesPerSes *float64  `json:"goroutines_per_session,omitempty"`
	PSSRatio         *float64  `json:"pss_per_session_ratio_to_a"`
	SetupSamples     []float64 `json:"setup_samples_ms"`
}

// SetupResult is measurement 5.
type SetupResult struct {
	Cases []SetupCase `json:"cases"`
}

// SetupCase is K workers opening sessions back to back for a while.
type SetupCase struct {
	Mode        string    `json:"mode"`
	Concurrency int       `json:"concurrency"`
	Seconds     float64   `json:"seconds"`
	Completed   int       `json:"completed"`
	Failures    int       `json:"failures"`
	FirstError  string    `json:"first_error,omitempty"`
	Rate        float64   `json:"sessions_per_second"`
	RateRatio   *float64  `json:"rate_ratio_to_a"`
	Millis      Summary   `json:"latency_ms"`
	Samples     []float64 `json:"samples_ms"`
}

// writeFiles writes the report as JSON and markdown under dir, named
// after its start time, and returns the paths.
func writeFiles(r *Report, dir string) (jsonPath, mdPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, "bench-"+r.Started.UTC().Format("20060102T150405Z"))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".md", []byte(renderMarkdown(r)), 0o644); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".md", nil
}

// renderTable renders a markdown table; rows shorter than the header are
// padded with empty cells. Columns are padded to equal width so that the
// text reads as a table too.
func renderTable(header []string, rows [][]string) string {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i := 0; i < len(header) && i < len(r); i++ {
			width[i] = max(width[i], len([]rune(r[i])))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range header {
			c := ""
			if i < len(cells) {
				c = strings.ReplaceAll(cells[i], "|", `\|`)
			}
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for i := range header {
		b.WriteString(strings.Repeat("-", width[i]+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// fmtRatio renders a ratio to (a), "n/a" when there is none.
func fmtRatio(r *float64) string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", *r)
}

// withRatio renders v followed by its ratio to (a) in parentheses.
func withRatio(v string, r *float64, isBase bool) string {
	if isBase {
		return v
	}
	return v + " (" + fmtRatio(r) + ")"
}

func mib(n float64) string { return fmt.Sprintf("%.1f", n/(1<<20)) }
func kib(n float64) string { return fmt.Sprintf("%.0f", n/(1<<10)) }

// renderMarkdown renders the report for people.
func renderMarkdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bastion vs OpenSSH as a jump host, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	m, v, p := r.Machine, r.Versions, r.Params
	dirty := ""
	if v.BastionDirty {
		dirty = " (uncommitted changes)"
	}
	fmt.Fprintf(&b, "Machine: %s, %d cores, Linux %s, %s GiB RAM; load average %s at start, %s at end.  \n",
		m.CPUModel, m.Cores, m.Kernel, fmt.Sprintf("%.1f", float64(m.MemTotalBytes)/(1<<30)), m.LoadAvgStart, m.LoadAvgEnd)
	fmt.Fprintf(&b, "Versions: %s, %s, bastion %s%s.  \n", v.Go, v.OpenSSH, v.BastionCommit, dirty)
	fmt.Fprintf(&b, "Routes: %s = `ssh -J jump` (a second sshd); %s = `ssh -J bastion`; %s = `ssh -l user+target bastion`. Ratios are to (a).\n\n",
		modeLabel[modeOpenSSH], modeLabel[modeBastionJump], modeLabel[modeBastionDirect])
	if p.Pin {
		fmt.Fprintf(&b, "Pinned (--pin): the jump host on CPU %d, the clients, upstream sshd, idle server and AWS fake on CPU %d, as on a dedicated bastion host.\n\n", jumpCPU, othersCPU)
	} else {
		b.WriteString("Not pinned: the jump host shares both CPUs with the clients, upstream sshd and AWS fake (see --pin).\n\n")
	}

	if bk := r.Bulk; bk != nil {
		fmt.Fprintf(&b, "## Bulk transfer, %s each way (median of %d rounds, A/B/C order rotated per round)\n\n", formatBytes(p.Bytes), p.Rounds)
		header := []string{"metric"}
		for _, md := range allModes {
			header = append(header, modeLabel[md])
		}
		var rows [][]string
		for _, dir := range []string{"down", "up"} {
			row := []string{dir + " MB/s"}
			cpu := []string{"jump host CPU s/GiB, " + dir}
			for _, md := range allModes {
				st, ok := findBulk(bk.Stats, md, dir)
				if !ok {
					row, cpu = append(row, ""), append(cpu, "")
					continue
				}
				row = append(row, withRatio(fmt.Sprintf("%.0f", st.MBps.Median), st.MBpsRatio, md == modeOpenSSH))
				cpu = append(cpu, withRatio(fmt.Sprintf("%.2f", st.CPUPerGiB.Median), st.CPURatio, md == modeOpenSSH))
			}
			rows = append(rows, row, cpu)
		}
		b.WriteString(renderTable(header, rows))
		fmt.Fprintf(&b, "\nCPU: %s\n\n", bk.CPUMethod)
	}

	if lt := r.Latency; lt != nil {
		fmt.Fprintf(&b, "## Connect latency, `ssh … true` (%d connects per case, cases interleaved)\n\n", p.Connects)
		var rows [][]string
		for _, c := range lt.Cases {
			calls := ""
			if c.AWSCalls != nil && c.Summary.N > 0 {
				var parts []string
				for _, op := range []string{"GetInstance", "GetInstanceAccessDetails"} {
					parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(c.AWSCalls[op])/float64(c.Summary.N+c.Failures)))
				}
				calls = strings.Join(parts, ", ")
			}
			cpu := ""
			if c.CPU.N > 0 {
				cpu = withRatio(fmt.Sprintf("%.1f", c.CPU.Mean), c.CPURatio, c.Mode == modeOpenSSH)
			}
			rows = append(rows, []string{c.Name, fmt.Sprintf("%.1f", c.Summary.Median), fmt.Sprintf("%.1f", c.Summary.P99),
				fmtRatio(c.P50Ratio), fmtRatio(c.P99Ratio), cpu, fmt.Sprint(c.Failures), calls})
		}
		b.WriteString(renderTable([]string{"case", "p50 ms", "p99 ms", "p50 vs (a)", "p99 vs (a)", "jump host CPU ms/connect (mean)", "failures", "AWS calls per connect"}, rows))
		fmt.Fprintf(&b, "\nUncached: the Lightsail provider against the AWS fake with %s added to every call, name cache off (resolve_cache: 0s) and credentials issued for less than the provider's one-minute refresh margin, so every connect calls GetInstanceAccessDetails. (a) has no uncached equivalent; its plain connect is the base.\n\n", p.AWSLatency)
	}

	if ss := r.Sessions; ss != nil {
		b.WriteString("## Idle interactive sessions (x/crypto clients, pty + shell each, to an in-process idle SSH server; a fresh bastion per route)\n\n")
		var rows [][]string
		for _, c := range ss.Cases {
			gor := "n/a"
			if c.GoroutinesPerSes != nil {
				gor = fmt.Sprintf("%.1f", *c.GoroutinesPerSes)
			}
			rate := 0.0
			if c.EstablishSeconds > 0 {
				rate = float64(c.Established) / c.EstablishSeconds
			}
			rows = append(rows, []string{modeLabel[c.Mode], fmt.Sprintf("%d/%d", c.Established, c.Sessions),
				fmt.Sprintf("%.1f (%.0f/s)", c.EstablishSeconds, rate),
				fmt.Sprintf("%.1f", c.SetupMillis.Median),
				mib(float64(c.RSSBefore)) + " → " + mib(float64(c.RSSAfter)),
				kib(c.RSSPerSession), withRatio(kib(c.PSSPerSession), c.PSSRatio, c.Mode == modeOpenSSH), gor, fmt.Sprint(c.Procs)})
		}
		b.WriteString(renderTable([]string{"route", "sessions", "established in s", "setup p50 ms", "jump host RSS MiB", "RSS KiB/session", "PSS KiB/session", "goroutines/session", "jump procs"}, rows))
		fmt.Fprintf(&b, "\nMemory: %s\n\n", ss.MemoryMethod)
	}

	if st := r.Setup; st != nil {
		fmt.Fprintf(&b, "## Session setup rate (x/crypto clients, %d concurrent, %s, connect + `exec true` + close, cached credentials)\n\n", p.SetupConcurrency, p.SetupDuration)
		var rows [][]string
		for _, c := range st.Cases {
			rows = append(rows, []string{modeLabel[c.Mode], withRatio(fmt.Sprintf("%.1f", c.Rate), c.RateRatio, c.Mode == modeOpenSSH),
				fmt.Sprintf("%.1f", c.Millis.Median), fmt.Sprintf("%.1f", c.Millis.P99), fmt.Sprint(c.Completed), fmt.Sprint(c.Failures)})
		}
		b.WriteString(renderTable([]string{"route", "sessions/s", "p50 ms", "p99 ms", "completed", "failures"}, rows))
		b.WriteString("\n")
	}

	for i := range r.Scale {
		b.WriteString(renderScale(&r.Scale[i]))
	}

	if r.Error != "" {
		fmt.Fprintf(&b, "**The run stopped early:** %s\n\n", r.Error)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func findBulk(stats []BulkStats, mode, dir string) (BulkStats, bool) {
	for _, s := range stats {
		if s.Mode == mode && s.Direction == dir {
			return s, true
		}
	}
	return BulkStats{}, false
}
