// Command harness is the program behind bench/run: it compares the bastion
// with OpenSSH's sshd as a jump host on one machine, over loopback, and
// writes a markdown table and a JSON file of raw samples under
// bench/results/. It is not part of the test suite; see README.md,
// "Benchmarks".
//
// What runs, side by side:
//
//   - upstream: a real `sshd -D` (its own host key and config), the
//     instance every OpenSSH-client measurement ends at. It admits the
//     person's key, the bastion's static key, and certificates of the AWS
//     fake's Lightsail CA.
//   - (a) jump: a second sshd, the OpenSSH ProxyJump host.
//   - (b)/(c): `bastion serve` (built without -race) with a static target
//     for the upstream sshd (cached credentials), the Lightsail provider
//     against an in-process AWS fake (uncached credentials), and a static
//     target for an in-process idle SSH server used by the session
//     measurements.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// options are the command-line flags.
type options struct {
	Bytes             byteSize
	Rounds            int
	Connects          int
	Sessions          int
	OpenSSHSessions   int
	EstablishParallel int
	SetupConcurrency  int
	SetupDuration     time.Duration
	AWSLatency        time.Duration
	Ciphers           string
	Only              []string
	Out               string
	BastionBin        string
	Keep              bool
	Pin               bool
	Record            string
	Scale             int
	ScaleStep         int
	ScaleRoutes       []string
}

// phases are the measurements, in the order they run; defaultPhases run
// without --only (scale takes minutes per route at 10,000 sessions).
var (
	phases        = []string{"bulk", "latency", "sessions", "setup", "scale"}
	defaultPhases = []string{"bulk", "latency", "sessions", "setup"}
)

func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{Bytes: 1 << 30}
	fs := flag.NewFlagSet("bench/run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.Bytes, "bytes", "bytes per bulk transfer, each way (1GiB, 64MiB, 1073741824)")
	fs.IntVar(&o.Rounds, "rounds", 5, "bulk rounds; each round runs (a), (b), (c) down and up, the order rotated per round")
	fs.IntVar(&o.Connects, "connects", 200, "connects (ssh … true) per latency case")
	fs.IntVar(&o.Sessions, "sessions", 1000, "concurrent idle sessions through the bastion, per route")
	fs.IntVar(&o.OpenSSHSessions, "openssh-sessions", 200, "concurrent idle sessions through the OpenSSH jump host (one sshd process each as root, two otherwise; 0 skips)")
	fs.IntVar(&o.EstablishParallel, "establish-parallel", 32, "sessions being established at once")
	fs.IntVar(&o.SetupConcurrency, "setup-concurrency", 16, "concurrent clients in the setup-rate measurement")
	fs.DurationVar(&o.SetupDuration, "setup-duration", 10*time.Second, "how long each setup-rate case runs")
	fs.DurationVar(&o.AWSLatency, "aws-latency", 50*time.Millisecond, "latency the AWS fake adds to every call (uncached case)")
	fs.StringVar(&o.Ciphers, "ciphers", "", "OpenSSH Ciphers for every leg the ssh client makes (default: OpenSSH's)")
	only := fs.String("only", strings.Join(defaultPhases, ","), "measurements to run, comma-separated: "+strings.Join(phases, ","))
	fs.IntVar(&o.Scale, "scale", 10000, "scale measurement: idle sessions to establish on one bastion (kept open together)")
	fs.IntVar(&o.ScaleStep, "scale-step", 1000, "scale measurement: sessions per step; memory and setup rate are read after each")
	routes := fs.String("scale-route", "b,c", "scale measurement: routes, comma-separated: b (bastion -J), c (bastion direct)")
	fs.StringVar(&o.Out, "out", "bench/results", "folder for the JSON and markdown results")
	fs.StringVar(&o.BastionBin, "bastion", "", "bastion binary (default: build ./cmd/bastion)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary folder (configs, logs, keys) for inspection")
	fs.BoolVar(&o.Pin, "pin", false, "model a dedicated bastion host: the jump host (OpenSSH or the bastion) on CPU 0, the clients, upstream sshd, idle server and AWS fake on CPU 1 (needs 2 CPUs and taskset)")
	fs.StringVar(&o.Record, "record", "", recordUsage)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, p := range strings.Split(*only, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(phases, p) {
			return o, fmt.Errorf("--only: unknown measurement %q, want some of %s", p, strings.Join(phases, ","))
		}
		o.Only = append(o.Only, p)
	}
	for _, r := range strings.Split(*routes, ",") {
		switch r = strings.TrimSpace(r); r {
		case modeBastionJump, modeBastionDirect:
			o.ScaleRoutes = append(o.ScaleRoutes, r)
		case "":
		default:
			return o, fmt.Errorf("--scale-route: unknown route %q, want b or c", r)
		}
	}
	switch {
	case slices.Contains(o.Only, "scale") && (o.Scale < 1 || o.ScaleStep < 1 || len(o.ScaleRoutes) == 0):
		return o, errors.New("--scale and --scale-step must be at least 1, and --scale-route name a route")
	case len(o.Only) == 0:
		return o, errors.New("--only: nothing to run")
	case o.Rounds < 1, o.Connects < 1, o.Sessions < 1, o.EstablishParallel < 1, o.SetupConcurrency < 1:
		return o, errors.New("--rounds, --connects, --sessions, --establish-parallel and --setup-concurrency must be at least 1")
	case o.OpenSSHSessions < 0:
		return o, errors.New("--openssh-sessions must not be negative")
	case !validRecord(o.Record):
		return o, fmt.Errorf("--record: %q is neither plain nor age", o.Record)
	case o.SetupDuration <= 0:
		return o, errors.New("--setup-duration must be positive")
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, err := parseOptions(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	h := &harness{opts: opts}
	defer h.close()
	rep := &Report{
		Started: time.Now(),
		Params: Params{Bytes: int64(opts.Bytes), Rounds: opts.Rounds, Connects: opts.Connects, Sessions: opts.Sessions,
			OpenSSHSessions: opts.OpenSSHSessions, EstablishParallel: opts.EstablishParallel, SetupConcurrency: opts.SetupConcurrency,
			SetupDuration: opts.SetupDuration.String(), AWSLatency: opts.AWSLatency.String(), Ciphers: opts.Ciphers, Only: opts.Only, Pin: opts.Pin, Record: opts.Record,
			Scale: opts.Scale, ScaleStep: opts.ScaleStep, ScaleRoutes: opts.ScaleRoutes},
		Modes: map[string]string{
			modeOpenSSH:       "OpenSSH sshd as the ProxyJump host: ssh -J jump upstream",
			modeBastionJump:   "the bastion via ProxyJump: ssh -J bastion user@target",
			modeBastionDirect: "the bastion in direct mode: ssh -l user+target bastion",
			modeNone:          "no jump host, straight to the upstream sshd (latency floor only)",
		},
	}
	rep.Machine = machineInfo()
	err = h.setup(ctx, rep)
	if err == nil {
		err = h.measure(ctx, rep)
	}
	rep.Finished = time.Now()
	rep.Machine.LoadAvgEnd = loadAvg()
	if busy(rep.Machine) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("The machine was busy (load average %s at start, %s at end, on %d cores): these numbers are noise; run on a quiet machine.",
			rep.Machine.LoadAvgStart, rep.Machine.LoadAvgEnd, rep.Machine.Cores))
	}
	code := 0
	if err != nil {
		rep.Error = err.Error()
		code = 1
		if ctx.Err() != nil {
			code = 130
		}
	}
	if rep.Versions.Go != "" { // set up far enough to have something to say
		jsonPath, mdPath, werr := writeFiles(rep, opts.Out)
		if werr != nil {
			fmt.Fprintln(os.Stderr, "bench: writing results:", werr)
			code = 1
		} else {
			fmt.Print(renderMarkdown(rep))
			fmt.Fprintf(os.Stderr, "bench: results in %s and %s\n", jsonPath, mdPath)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
	}
	return code
}

// harness owns everything a run starts.
type harness struct {
	opts options
	dir  string
	me   string
	ds   daemons

	sshBin, sshdBin string
	person          keypair // the person's key (OpenSSH and x/crypto clients)
	upstreamKey     keypair // the bastion's key for its static targets
	fake            *awsfake.Server
	light           *lightServer
	upstream, jump  *sshd
	bcfg            bastionConfig
	bastion         *bastionProc
	client          *opensshClient
	metrics         metricsProbe
	// sshdGroup and bastionGroup hold the jump hosts' CPU (cgroup.go);
	// nil where cgroups cannot be written, and /proc is read instead.
	sshdGroup, bastionGroup *cpuGroup
	// groupErr is why there are no cgroups, for the report.
	groupErr error
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// CPUs of --pin.
const (
	jumpCPU   = 0
	othersCPU = 1
)

// pin puts every thread of pid on cpu, with taskset (util-linux); threads
// and processes it creates later inherit it.
func pin(ctx context.Context, pid, cpu int) error {
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("--pin needs 2 CPUs, this machine has %d", runtime.NumCPU())
	}
	if out, err := runTool(ctx, "taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("--pin: taskset of pid %d to CPU %d: %v: %s", pid, cpu, err, out)
	}
	return nil
}

// meter returns the jump hosts' CPU meter.
func (h *harness) meter() jumpMeter {
	return jumpMeter{sshdPID: h.jump.PID(), bastionPID: h.bastion.PID(), sshdGroup: h.sshdGroup, bastionGroup: h.bastionGroup}
}

// close stops every process and server the run started and removes the
// temporary folder.
func (h *harness) close() {
	h.ds.stopAll()
	for _, g := range []*cpuGroup{h.sshdGroup, h.bastionGroup} {
		if g != nil {
			g.close()
		}
	}
	if h.light != nil {
		h.light.Close()
	}
	if h.fake != nil {
		h.fake.Close()
	}
	if h.dir != "" {
		if h.opts.Keep {
			fmt.Fprintf(os.Stderr, "bench: kept %s\n", h.dir)
		} else {
			os.RemoveAll(h.dir)
		}
	}
}

// setup starts the fake, the idle server, both sshds and the bastion, and
// checks every route once.
func (h *harness) setup(ctx context.Context, rep *Report) error {
	var err error
	if h.sshBin, err = lookTool("ssh"); err != nil {
		return err
	}
	if h.sshdBin, err = lookTool("sshd"); err != nil {
		return err
	}
	for _, t := range []string{"sh", "head"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: %w", t, err)
		}
	}
	u, err := user.Current()
	if err != nil {
		return err
	}
	h.me = u.Username
	if h.opts.Pin {
		// Before anything starts: what the harness starts inherits CPU 1.
		if err := pin(ctx, os.Getpid(), othersCPU); err != nil {
			return err
		}
	}
	nofile, err := raiseNofile()
	if err != nil {
		return err
	}
	most := max(h.opts.Sessions, h.opts.OpenSSHSessions)
	if slices.Contains(h.opts.Only, "scale") {
		most = max(most, h.opts.Scale)
	}
	// The harness holds two descriptors per session: the client's
	// connection and the idle server's.
	if need := uint64(2*most + 256); nofile < need {
		return fmt.Errorf("RLIMIT_NOFILE is %d and cannot be raised; %d sessions need about %d (raise the hard limit, or lower --sessions or --scale)", nofile, most, need)
	}
	h.logf("RLIMIT_NOFILE raised to %d for the harness and what it starts", nofile)
	rep.Notes = append(rep.Notes, fmt.Sprintf("RLIMIT_NOFILE of the harness (inherited by sshd and the bastion): %d.", nofile))
	if h.dir, err = os.MkdirTemp("", "bastion-bench-"); err != nil {
		return err
	}
	if h.opts.BastionBin == "" {
		h.opts.BastionBin = filepath.Join(h.dir, "bastion")
		h.logf("building ./cmd/bastion")
		if _, err := runTool(ctx, "go", "build", "-o", h.opts.BastionBin, "./cmd/bastion"); err != nil {
			return err
		}
	}
	rep.Versions = versions(ctx, h.sshBin, h.opts.BastionBin)

	if h.person, err = newKey(h.dir, "person"); err != nil {
		return err
	}
	if h.upstreamKey, err = newKey(h.dir, "upstream_key"); err != nil {
		return err
	}
	lightKey, err := newKey(h.dir, "light_host_key")
	if err != nil {
		return err
	}
	if h.light, err = startLight(lightKey.Signer, h.person.Signer.PublicKey(), h.upstreamKey.Signer.PublicKey()); err != nil {
		return err
	}

	// Credentials valid for less than the Lightsail provider's refresh
	// margin (one minute) are never cached: every connect calls
	// GetInstanceAccessDetails. 30 s is ample for a login.
	if h.fake, err = awsfake.Start(awsfake.Options{CertValidity: 30 * time.Second, RSAKeyPool: 8}); err != nil {
		return fmt.Errorf("starting the AWS fake: %w", err)
	}
	h.fake.SetFault("", awsfake.Fault{Latency: h.opts.AWSLatency})
	caFile := filepath.Join(h.dir, "lightsail_ca.pub")
	if err := os.WriteFile(caFile, ssh.MarshalAuthorizedKey(h.fake.LightsailCA()), 0o644); err != nil {
		return err
	}

	h.logf("starting sshd (upstream and jump) and the bastion in %s", h.dir)
	if h.upstream, err = startSSHD(ctx, &h.ds, h.sshdBin, h.dir, "upstream",
		[]string{h.person.AuthorizedKey(), h.upstreamKey.AuthorizedKey()},
		[]string{
			"TrustedUserCAKeys " + caFile,
			// Commands run as `$SHELL -c …`; bash sources ~/.bashrc when
			// started by sshd at SHLVL < 2, and a slow rc file (pyenv,
			// nvm, conda) would dominate every connect the same way for
			// all routes. SHLVL=1 makes bash skip it.
			"SetEnv SHLVL=1",
		}); err != nil {
		return err
	}
	if h.jump, err = startSSHD(ctx, &h.ds, h.sshdBin, h.dir, "jump", []string{h.person.AuthorizedKey()}, nil); err != nil {
		return err
	}
	// Before any connection, so that every sshd it forks is in it (and,
	// with --pin, on its CPU).
	h.sshdGroup, h.groupErr = newCPUGroup("sshd", h.jump.PID())
	if h.opts.Pin {
		if err := pin(ctx, h.jump.PID(), jumpCPU); err != nil {
			return err
		}
	}
	h.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: lightsailName, Region: awsRegion, Username: h.me,
		PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", HostKeys: []ssh.PublicKey{h.upstream.HostKey}})
	h.bcfg = bastionConfig{Dir: filepath.Join(h.dir, "bastion"), PersonKey: h.person.AuthorizedKey(),
		UpstreamKey: h.upstreamKey.Private, OSUser: h.me, Upstream: h.upstream,
		LightAddr: h.light.Addr(), LightHostKey: h.light.HostKey, Record: h.opts.Record}
	if err := h.startBastion(ctx); err != nil {
		return err
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", h.bastion.PID())); err == nil {
		rep.Machine.OpenFiles, _ = parseOpenFilesLimit(b)
	}
	if h.metrics.URL == "" {
		rep.Notes = append(rep.Notes, "The bastion served no go_goroutines on admin_listen /metrics, so goroutines per session are not reported.")
	}
	return h.preflight(ctx)
}

// startBastion (re)starts the bastion with h.bcfg and a fresh admin port,
// and rewrites the OpenSSH client config for its address.
func (h *harness) startBastion(ctx context.Context) error {
	if h.bastion != nil {
		h.ds.stop(h.bastion.daemon)
		h.bastion = nil
	}
	h.bcfg.AdminAddr = "127.0.0.1:0"
	var err error
	if h.bastion, err = startBastion(ctx, &h.ds, h.opts.BastionBin, h.bcfg, awsEnv(h.fake)); err != nil {
		return err
	}
	if h.bastionGroup != nil {
		h.bastionGroup.close()
		h.bastionGroup = nil
	}
	if h.groupErr == nil {
		h.bastionGroup, h.groupErr = newCPUGroup("bastion", h.bastion.PID())
	}
	if h.opts.Pin {
		if err := pin(ctx, h.bastion.PID(), jumpCPU); err != nil {
			return err
		}
	}
	h.metrics = metricsProbe{URL: "http://" + h.bastion.AdminAddr + "/metrics"}
	if h.metrics.goroutines(ctx) == nil {
		h.metrics.URL = ""
	}
	cc, err := writeClientConfig(h.dir, h.person, h.me, h.jump, h.upstream, h.bastion, h.opts.Ciphers)
	if err != nil {
		return err
	}
	h.client = &opensshClient{Bin: h.sshBin, Config: cc.Path, OSUser: h.me}
	return nil
}

// dialer returns an x/crypto dialer to the idle server by mode.
func (h *harness) dialer(mode string) *goDialer {
	return &goDialer{Mode: mode, Key: h.person.Signer, OSUser: h.me,
		JumpAddr: h.jump.Addr, JumpKey: h.jump.HostKey,
		Bastion: h.bastion.Addr, BastKey: h.bastion.HostKey, HostCA: h.bastion.HostCA,
		Light: h.light.Addr(), LightKey: h.light.HostKey}
}

// preflight checks every route once with the OpenSSH client and with
// x/crypto, so that a broken setup fails before any measurement.
func (h *harness) preflight(ctx context.Context) error {
	for _, lc := range latencyCases {
		_, out, err := h.client.run(ctx, lc.mode, lc.target, "echo bench-ok", 0, true, 60*time.Second)
		if err != nil {
			return fmt.Errorf("preflight %s: %w", lc.name, err)
		}
		if out != "bench-ok\n" {
			return fmt.Errorf("preflight %s: got %q, want %q", lc.name, out, "bench-ok\n")
		}
	}
	for _, mode := range allModes {
		if err := oneSession(ctx, h.dialer(mode)); err != nil {
			return fmt.Errorf("preflight x/crypto %s: %w", modeLabel[mode], err)
		}
	}
	return nil
}

// measure runs the selected measurements in order, filling rep as it
// goes so that a failure keeps what was measured before it.
func (h *harness) measure(ctx context.Context, rep *Report) error {
	rep.Notes = append(rep.Notes,
		"Crypto work per byte differs by design: (a) decrypts and re-encrypts only the outer SSH layer (the inner session is end to end, client to instance); (b) terminates the outer and the inner SSH layer and runs a third to the instance; (c) terminates the client's SSH layer and runs a second to the instance.",
		"The OpenSSH client, the x/crypto clients, the idle SSH server and the AWS fake run on the same machine as the jump hosts and compete with them for CPU.",
	)
	run := func(p string) bool { return slices.Contains(h.opts.Only, p) }
	var err error
	if run("bulk") {
		h.logf("bulk: %s each way, %d rounds", formatBytes(int64(h.opts.Bytes)), h.opts.Rounds)
		meter := h.meter()
		if h.groupErr != nil {
			rep.Notes = append(rep.Notes, "Jump host CPU is read from /proc, not from a cgroup ("+h.groupErr.Error()+"): an sshd child that outlives its parent is missed.")
		}
		if rep.Bulk, err = runBulk(ctx, h.client, meter, int64(h.opts.Bytes), h.opts.Rounds, h.logf); err != nil {
			return err
		}
	}
	if run("latency") {
		h.logf("latency: %d connects per case", h.opts.Connects)
		meter := h.meter()
		if rep.Latency, err = runLatency(ctx, h.client, meter, h.opts.Connects, h.fake.CallCount, h.logf); err != nil {
			return err
		}
		for _, c := range rep.Latency.Cases {
			if !c.Cached && c.AWSCalls["GetInstanceAccessDetails"] < c.Summary.N {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s: only %d GetInstanceAccessDetails calls for %d connects: some credentials were cached.",
					c.Name, c.AWSCalls["GetInstanceAccessDetails"], c.Summary.N))
			}
		}
	}
	if run("sessions") {
		res := &SessionsResult{MemoryMethod: memoryMethod}
		if h.me == "root" && h.opts.OpenSSHSessions > 0 {
			res.MemoryMethod += " Logged in as root, sshd keeps one process per connection (no post-authentication " +
				"privilege separation for root); as another user it keeps two, and costs more per session."
		}
		rep.Sessions = res
		var base *SessionsCase
		if h.opts.OpenSSHSessions > 0 {
			h.logf("sessions: %d through the OpenSSH jump host", h.opts.OpenSSHSessions)
			c, err := runSessions(ctx, h.dialer(modeOpenSSH), h.jump.PID(), h.light, metricsProbe{}, h.opts.OpenSSHSessions, h.opts.EstablishParallel, h.logf)
			res.Cases = append(res.Cases, c)
			if err != nil {
				return err
			}
			base = &res.Cases[0]
		}
		for _, mode := range []string{modeBastionJump, modeBastionDirect} {
			// A fresh bastion per route: memory freed by the previous
			// route's sessions would otherwise be reused and hide the cost.
			if err := h.startBastion(ctx); err != nil {
				return err
			}
			h.logf("sessions: %d through %s", h.opts.Sessions, modeLabel[mode])
			c, err := runSessions(ctx, h.dialer(mode), h.bastion.PID(), h.light, h.metrics, h.opts.Sessions, h.opts.EstablishParallel, h.logf)
			if base != nil {
				c.PSSRatio = ratio(c.PSSPerSession, base.PSSPerSession)
			}
			res.Cases = append(res.Cases, c)
			if err != nil {
				return err
			}
		}
	}
	if run("setup") {
		res := &SetupResult{}
		rep.Setup = res
		for _, mode := range allModes {
			h.logf("setup rate: %s, %d concurrent for %s", modeLabel[mode], h.opts.SetupConcurrency, h.opts.SetupDuration)
			c, err := runSetup(ctx, h.dialer(mode), h.opts.SetupConcurrency, h.opts.SetupDuration)
			if len(res.Cases) > 0 && res.Cases[0].Mode == modeOpenSSH {
				c.RateRatio = ratio(c.Rate, res.Cases[0].Rate)
			}
			res.Cases = append(res.Cases, c)
			if err != nil {
				return err
			}
		}
	}
	if run("scale") {
		for _, mode := range h.opts.ScaleRoutes {
			if err := h.startBastion(ctx); err != nil {
				return err
			}
			h.logf("scale: up to %d sessions through %s, %d per step", h.opts.Scale, modeLabel[mode], h.opts.ScaleStep)
			res, err := runScale(ctx, h.dialer(mode), h.bastion.PID(), h.light, h.metrics, h.opts.Scale, h.opts.ScaleStep, h.opts.EstablishParallel, h.logf)
			if b, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/limits", h.bastion.PID())); rerr == nil {
				res.BastionNofile, _ = parseOpenFilesLimit(b)
			}
			rep.Scale = append(rep.Scale, res)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// raiseNofile raises RLIMIT_NOFILE to its hard limit (and, as root, the
// hard limit to fs.nr_open) for the harness and, by inheritance, every
// process it starts. Setting it explicitly also stops Go from restoring
// the original soft limit in child processes. It returns the new limit.
func raiseNofile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if os.Geteuid() == 0 {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > lim.Max {
				lim.Max = min(n, 1<<20)
			}
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		// Keep the hard limit we have.
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
		}
	}
	return lim.Cur, nil
}

// machineInfo describes the machine from /proc.
func machineInfo() Machine {
	m := Machine{Cores: runtime.NumCPU(), LoadAvgStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotalBytes, _, _ = parseKBField(b, "MemTotal")
	}
	return m
}

// busy reports whether the 1-minute load average at the start or the end
// of the run exceeded half the cores (the run itself adds load).
func busy(m Machine) bool {
	for _, la := range []string{m.LoadAvgStart, m.LoadAvgEnd} {
		f := strings.Fields(la)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > float64(m.Cores)/2 {
			return true
		}
	}
	return false
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// versions reports Go's, OpenSSH's and the bastion's.
func versions(ctx context.Context, sshBin, bastionBin string) Versions {
	v := Versions{Go: runtime.Version(), BastionCommit: "unknown"}
	if out, err := runTool(ctx, sshBin, "-V"); err == nil {
		v.OpenSSH = strings.TrimSpace(out)
	}
	if out, err := runTool(ctx, "git", "rev-parse", "HEAD"); err == nil {
		v.BastionCommit = strings.TrimSpace(out)
	}
	if out, err := runTool(ctx, "git", "status", "--porcelain", "--untracked-files=no"); err == nil {
		v.BastionDirty = strings.TrimSpace(out) != ""
	}
	if out, err := runTool(ctx, bastionBin, "version"); err == nil {
		v.BastionVersion = strings.TrimSpace(out)
	}
	return v
}
