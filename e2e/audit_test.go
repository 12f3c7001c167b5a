package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"bastion/audit/recording"
)

var update = flag.Bool("update", false, "rewrite the golden audit files in testdata")

// auditWorld is a bastion with recordings and an admin listener in front of
// a real sshd (static target web-1), and bob, who may do everything.
type auditWorld struct {
	b     *bastionProc
	bob   *client
	me    string
	admin string
	rec   string
}

var adminRE = regexp.MustCompile(`bastion: admin on http://(\S+)`)

// newAuditWorld starts the world; auditExtra is added to the audit block
// (indented two spaces), extraConfig at the end of the file.
func newAuditWorld(t *testing.T, auditExtra, extraConfig string, env ...string) *auditWorld {
	t.Helper()
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	bobKey := newKey(t, dir, "bob")
	rec := filepath.Join(dir, "recordings")
	b := startBastion(t, fmt.Sprintf(`  recordings: %[1]s
%[7]s
admin_listen: 127.0.0.1:0
users:
  - {name: bob, keys: [%[2]q], groups: [ops]}
providers:
  static:
    - {name: web-1, address: %[3]q, user: %[4]s, private_key: %[5]q, host_key: %[6]q}
    - {name: db-1, address: %[3]q, user: %[4]s, private_key: %[5]q, host_key: %[6]q}
policies:
  - {groups: [ops], targets: ["web-1"], os_users: ["*"], allow: [port_forwarding]}
%[8]s`, rec, bobKey.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey(), auditExtra, extraConfig), env...)
	m := adminRE.FindStringSubmatch(b.proc.out.String())
	if m == nil {
		t.Fatalf("no admin address in the bastion's output:\n%s", b.proc.out.String())
	}
	return &auditWorld{b: b, bob: newClient(t, b, "bob", bobKey), me: me, admin: m[1], rec: rec}
}

// ptyShell types lines into `ssh -tt` under a real pty.
type ptyShell struct {
	cmd  *exec.Cmd
	tty  *os.File
	out  *syncBuffer
	done chan struct{}
}

func startPTYShell(t *testing.T, c *client, args ...string) *ptyShell {
	t.Helper()
	cmd := exec.Command("ssh", append([]string{"-F", c.ConfigPath, "-tt"}, args...)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	s := &ptyShell{cmd: cmd, tty: tty, out: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		io.Copy(s.out, tty)
		close(s.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		tty.Close()
	})
	return s
}

// send types line and waits for want in the output.
func (s *ptyShell) send(t *testing.T, line, want string) {
	t.Helper()
	io.WriteString(s.tty, line+"\r")
	waitFor(t, fmt.Sprintf("%q after %q; output so far %q", want, line, s.out.String()), 20*time.Second, func() bool {
		return strings.Contains(s.out.String(), want)
	})
}

// exit types line and waits for ssh to end, returning its exit code.
func (s *ptyShell) exit(t *testing.T, line string) int {
	t.Helper()
	io.WriteString(s.tty, line+"\r")
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("ssh -tt did not exit after %q; output %q", line, s.out.String())
	}
	s.cmd.Wait()
	return s.cmd.ProcessState.ExitCode()
}

// TestScriptedSession runs a scripted set of sessions through the real
// OpenSSH tools and compares the audit events they produce with a golden
// file (volatile fields masked), checks the pty session's asciicast
// recording, and that the metrics moved.
func TestScriptedSession(t *testing.T) {
	w := newAuditWorld(t, "", "")
	before := scrape(t, w.admin)
	dir := t.TempDir()
	remoteDir := t.TempDir()

	// 1. An interactive shell, typed into a pty.
	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	sh.send(t, "echo typed-$((6*7))", "typed-42")
	if code := sh.exit(t, "exit 0"); code != 0 {
		t.Fatalf("pty shell: got exit %d, want 0; output %q", code, sh.out.String())
	}
	// Each step waits for its connection's last event, so that the
	// golden order does not depend on how fast the bastion notices a
	// client that has already exited.
	closed := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("connection_closed #%d", n), 20*time.Second, func() bool { return countType(t, w.b, "connection_closed") == n })
	}
	closed(1)

	// 2. An sftp batch: put, get, rm.
	local := filepath.Join(dir, "upload.txt")
	writeFile(t, local, strings.Repeat("sftp payload\n", 1000), 0o644)
	remote := filepath.Join(remoteDir, "upload.txt")
	batch := fmt.Sprintf("put %s %s\nget %s %s\nrm %s\n", local, remote, remote, filepath.Join(dir, "back.txt"), remote)
	if r := w.bob.run(t, []byte(batch), "sftp", "-b", "-", "-J", "bastion", w.me+"@web-1"); r.Code != 0 {
		t.Fatalf("sftp: exit %d, stderr %s", r.Code, r.Stderr)
	}
	closed(2)

	// 3. An scp upload (SFTP protocol, OpenSSH's default).
	if r := w.bob.run(t, nil, "scp", "-J", "bastion", local, w.me+"@web-1:"+filepath.Join(remoteDir, "scp.txt")); r.Code != 0 {
		t.Fatalf("scp: exit %d, stderr %s", r.Code, r.Stderr)
	}
	closed(3)

	// 4. An exec that exits 3.
	if r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo hi; exit 3"); r.Code != 3 {
		t.Fatalf("exec: got exit %d, want 3; stderr %s", r.Code, r.Stderr)
	}
	closed(4)

	// 5. A -L forward used once. It listens on a unix socket, so that
	// waiting for it does not open a forward of its own.
	page := httpServer(t, "forwarded page")
	sock := filepath.Join(dir, "fwd.sock")
	fwd := startProcess(t, exec.Command("ssh", "-F", w.bob.ConfigPath, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", sock+":"+page, "-J", "bastion", w.me+"@web-1"))
	waitFor(t, "the forward's socket", 20*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	viaSock := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	if got, err := httpGet(viaSock, "http://forward/"); err != nil || got != "forwarded page" {
		t.Fatalf("-L: got %q, %v", got, err)
	}
	waitFor(t, "forward_close", 20*time.Second, func() bool { return countType(t, w.b, "forward_close") == 1 })
	fwd.cmd.Process.Kill()
	closed(5)

	events := readEvents(t, w.b)
	got := normalize(events, w.me, page)
	golden := filepath.Join("testdata", "scripted_session.golden")
	if *update {
		writeFile(t, golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading %s (run go test -update to create it): %v", golden, err)
	}
	if got != string(want) {
		t.Errorf("audit events differ from %s (rerun with -update after checking):\n%s", golden, diffLines(string(want), got))
	}

	// Every event of one connection carries its session id; every exit
	// status and byte count is there.
	for _, e := range events {
		if e["session_id"] == nil {
			t.Errorf("event without session_id: %v", e)
		}
	}

	// The pty session's recording holds what was typed and echoed.
	var castPath string
	for _, e := range events {
		if e["type"] == "session_end" && e["kind"] == "shell" {
			castPath, _ = e["recording"].(string)
		}
	}
	if castPath == "" {
		t.Fatal("no recording named in the shell's session_end event")
	}
	f, err := os.Open(castPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, evs, err := recording.Parse(f)
	if err != nil {
		t.Fatalf("recording %s: %v", castPath, err)
	}
	var out strings.Builder
	for _, e := range evs {
		if e.Type == recording.TypeOutput {
			out.WriteString(e.Data)
		}
	}
	if hdr.Width != 80 || hdr.Height != 24 {
		t.Errorf("recording size: got %dx%d, want 80x24", hdr.Width, hdr.Height)
	}
	for _, want := range []string{"echo typed-$((6*7))", "typed-42"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("recording output: no %q in %q", want, out.String())
		}
	}

	// A refused key and a refused target, for their counters.
	stranger := newClient(t, w.b, "bob", newKey(t, dir, "stranger"))
	if r := stranger.ssh(t, nil, "bastion", "list"); r.Code == 0 {
		t.Errorf("unknown key: got exit 0, want a refusal")
	}
	if r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@db-1", "true"); !strings.Contains(r.Stderr, "no policy lets bob reach db-1") {
		t.Errorf("db-1: stderr %q, want the refusal", r.Stderr)
	}

	// The metrics moved, and the gauges came back to 0.
	var after map[string]float64
	waitFor(t, "the active gauges to reach 0", 20*time.Second, func() bool {
		after = scrape(t, w.admin)
		return after["bastion_links_active"] == 0 && after["bastion_sessions_active"] == 0 && after["bastion_connections_active"] == 0
	})
	for _, series := range []string{
		`bastion_connections_total`,
		`bastion_links_total`,
		`bastion_sessions_total`,
		`bastion_channels_total{type="session"}`,
		`bastion_channels_total{type="direct-tcpip"}`,
		`bastion_bytes_spliced_total{direction="up"}`,
		`bastion_bytes_spliced_total{direction="down"}`,
		`bastion_upstream_connect_duration_seconds_count{provider="static",result="ok"}`,
		`bastion_auth_failures_total{reason="unknown_key"}`,
		`bastion_policy_denials_total{capability="target"}`,
	} {
		if after[series] <= before[series] {
			t.Errorf("metric %s: got %v after, %v before; want it to grow", series, after[series], before[series])
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := plainHTTP.Get("http://" + w.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: got %d, want 200", path, resp.StatusCode)
		}
	}
}

// countType counts the audit events of type typ.
func countType(t *testing.T, b *bastionProc, typ string) int {
	n := 0
	for _, line := range b.AuditLines(t) {
		if strings.Contains(line, `"type":"`+typ+`"`) {
			n++
		}
	}
	return n
}

func readEvents(t *testing.T, b *bastionProc) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range b.AuditLines(t) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// goldenFields are the event fields compared with the golden file;
// everything else (times, ids, addresses, fingerprints) varies by run.
var goldenFields = []string{"type", "mode", "user", "typed", "target", "provider", "os_user", "method", "login",
	"kind", "command", "subsystem", "term", "op", "path", "new_path", "open_mode", "status", "aborted",
	"exit_status", "exit_signal", "capability", "reason", "dest", "limit", "host_key_source", "channel"}

// normalize renders events one a line with the golden fields, session ids
// numbered by first appearance, paths reduced to their base names, the
// user running the tests as $ME and the forwarded server as $PAGE; byte
// counts and recordings show only whether they are there.
func normalize(events []map[string]any, me, page string) string {
	sessions := map[string]int{}
	var b strings.Builder
	for _, e := range events {
		id, _ := e["session_id"].(string)
		if _, ok := sessions[id]; !ok {
			sessions[id] = len(sessions) + 1
		}
		parts := []string{fmt.Sprintf("S%d", sessions[id])}
		keys := make([]string, 0, len(goldenFields))
		for _, k := range goldenFields {
			if _, ok := e[k]; ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys[1:])
		for _, k := range keys {
			v := fmt.Sprint(e[k])
			switch k {
			case "path", "new_path":
				v = filepath.Base(v)
			case "command":
				v = regexp.MustCompile(`/tmp/\S*/`).ReplaceAllString(v, "$$TMP/")
			}
			v = strings.ReplaceAll(v, page, "$PAGE")
			if k == "os_user" || k == "login" {
				v = strings.ReplaceAll(v, me, "$ME")
			}
			parts = append(parts, k+"="+strconv.Quote(v))
		}
		for _, k := range []string{"bytes_up", "bytes_down", "bytes_read", "bytes_written", "size", "recording", "expires", "host_key_fingerprint"} {
			if _, ok := e[k]; ok {
				parts = append(parts, k+"=*")
			}
		}
		b.WriteString(strings.Join(parts, " ") + "\n")
	}
	return b.String()
}

// diffLines shows the first lines where want and got differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// scrapeText fetches /metrics.
func scrapeText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := plainHTTP.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scrape returns the samples of /metrics by series (name with labels).
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(scrapeText(t, admin)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestRecordingUpload ships a recording to an S3 fake (gofakes3, over HTTP
// with the real SDK client): while the fake is down the recording stays in
// the local folder, and once it is up the recording lands in the bucket and
// the local copy goes.
func TestRecordingUpload(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down until the recording exists
	w := newAuditWorld(t, "  s3: {bucket: recs, prefix: bastion/, region: us-east-1}\n", "",
		"AWS_ENDPOINT_URL_S3=http://"+addr, "AWS_ACCESS_KEY_ID=AKIDFAKE", "AWS_SECRET_ACCESS_KEY=fake-secret",
		"AWS_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")

	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	sh.send(t, "echo shipped-$((6*7))", "shipped-42")
	if code := sh.exit(t, "exit 0"); code != 0 {
		t.Fatalf("pty shell: got exit %d", code)
	}
	var cast string
	waitFor(t, "the recording to be finished", 20*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext))
		if len(m) == 1 {
			cast = m[0]
		}
		return cast != ""
	})
	waitFor(t, "a failed upload attempt", 20*time.Second, func() bool {
		return scrape(t, w.admin)[`bastion_recording_uploads_total{result="error"}`] >= 1
	})
	if _, err := os.Stat(cast); err != nil {
		t.Fatalf("with S3 down the recording must stay: %v", err)
	}

	backend := s3mem.New()
	if err := backend.CreateBucket("recs"); err != nil {
		t.Fatal(err)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bringing the S3 fake up on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: gofakes3.New(backend).Server()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	key := "bastion/" + filepath.Base(cast)
	waitFor(t, "the recording in the bucket", 60*time.Second, func() bool {
		_, err := backend.HeadObject("recs", key)
		return err == nil
	})
	obj, err := backend.GetObject("recs", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Contents.Close()
	_, evs, err := recording.Parse(obj.Contents)
	if err != nil {
		t.Fatalf("uploaded recording: %v", err)
	}
	var out strings.Builder
	for _, e := range evs {
		out.WriteString(e.Data)
	}
	if !strings.Contains(out.String(), "shipped-42") {
		t.Errorf("uploaded recording: no shipped-42 in %q", out.String())
	}
	waitFor(t, "the local copy to go", 20*time.Second, func() bool {
		_, err := os.Stat(cast)
		return os.IsNotExist(err)
	})
	waitFor(t, "recording_uploaded in the audit log", 10*time.Second, func() bool {
		return auditHas(t, w.b, "recording_uploaded", key)
	})
}
