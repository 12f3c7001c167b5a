package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"bastion/internal/awsfake"
)

// cwGroup and cwStream are where the CloudWatch tests' bastions send their
// audit events.
const (
	cwGroup  = "/bastion/audit"
	cwStream = "e2e-replica"
)

// cloudWatchWorld is a bastion whose audit events also go to CloudWatch
// Logs (the AWS fake), in front of a real sshd (static target web-1) that
// bob may log in to.
type cloudWatchWorld struct {
	fake  *awsfake.Server
	b     *bastionProc
	bob   *client
	me    string
	admin string
	// body and env are the bastion's config and environment, for restart.
	body string
	env  []string
}

// newCloudWatchWorld starts the fake (with the log group) and the bastion;
// extra is added to the config's audit block (lines indented two spaces),
// top is added at the top level.
func newCloudWatchWorld(t *testing.T, extra, top string) *cloudWatchWorld {
	t.Helper()
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	fake.CreateLogGroup(region, cwGroup)
	keys := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, keys, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	bobKey := newKey(t, keys, "bob")
	env := append(awsEnv(fake, fake.SecretAccessKey()), "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS="+fake.URL())
	body := fmt.Sprintf(`  signing_key: audit_ed25519
  checkpoint_interval: 1s
  cloudwatch:
    log_group: %s
    log_stream: %s
    flush_interval: 200ms
%s
admin_listen: 127.0.0.1:0
users:
  - {name: bob, keys: [%q], groups: [ops]}
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [ops], targets: ["web-1"], os_users: ["*"]}
%s`, cwGroup, cwStream, extra, bobKey.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey(), top)
	w := &cloudWatchWorld{fake: fake, me: me, body: body, env: env}
	w.start(t, t.TempDir())
	w.bob = newClient(t, w.b, "bob", bobKey)
	return w
}

// start starts the bastion with its files in dir.
func (w *cloudWatchWorld) start(t *testing.T, dir string) {
	t.Helper()
	w.b = startBastionIn(t, dir, w.body, w.env...)
	m := adminRE.FindStringSubmatch(w.b.proc.out.String())
	if m == nil {
		t.Fatalf("no admin address in the bastion's output:\n%s", w.b.proc.out.String())
	}
	w.admin = m[1]
	if w.bob != nil {
		w.bob = newClient(t, w.b, "bob", w.bob.Key)
	}
}

// run runs command on web-1 through the bastion.
func (w *cloudWatchWorld) run(t *testing.T, command string) result {
	t.Helper()
	return w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", command)
}

// stop ends the bastion with SIGTERM and waits for it to exit.
func (w *cloudWatchWorld) stop(t *testing.T, within time.Duration) {
	t.Helper()
	w.b.signal(t, syscall.SIGTERM)
	w.b.waitExit(t, within)
}

// readCloudWatch reads the whole stream back through the real SDK client,
// page by page with GetLogEvents, as an auditor would.
func readCloudWatch(t *testing.T, fake *awsfake.Server) []string {
	t.Helper()
	client := cloudwatchlogs.New(cloudwatchlogs.Options{
		Region:       region,
		BaseEndpoint: aws.String(fake.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider(fake.AccessKeyID(), fake.SecretAccessKey(), ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lines []string
	in := &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String(cwGroup), LogStreamName: aws.String(cwStream),
		StartFromHead: aws.Bool(true), Limit: aws.Int32(50)}
	for {
		out, err := client.GetLogEvents(ctx, in)
		if err != nil {
			t.Fatalf("GetLogEvents: %v", err)
		}
		for _, e := range out.Events {
			lines = append(lines, aws.ToString(e.Message))
		}
		if in.NextToken != nil && aws.ToString(out.NextForwardToken) == aws.ToString(in.NextToken) {
			return lines
		}
		in.NextToken = out.NextForwardToken
	}
}

// checkSeq fails unless lines carry seq first, first+1, … in order.
func checkSeq(t *testing.T, lines []string, first int64) {
	t.Helper()
	for i, line := range lines {
		var e struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", i+1, err, line)
		}
		if e.Seq != first+int64(i) {
			t.Fatalf("line %d: seq %d, want %d", i+1, e.Seq, first+int64(i))
		}
	}
}

// TestCloudWatchAuditDelivery: after several logins and commands, a
// restart, more of them and a clean stop, the CloudWatch Logs stream (read
// back with GetLogEvents through the real SDK client) holds exactly the
// lines of audit.log, in order, seq continuous from 1 across the restart,
// and that copy verifies on its own with `bastion audit verify --pubkey`.
func TestCloudWatchAuditDelivery(t *testing.T) {
	w := newCloudWatchWorld(t, "", "")
	for i := range 2 {
		tag := fmt.Sprintf("first-run-%d", i)
		if r := w.run(t, "echo "+tag); r.Code != 0 || r.Stdout != tag+"\n" {
			t.Fatalf("ssh %d: got exit %d %q %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	w.stop(t, 60*time.Second)
	w.start(t, w.b.Dir)
	for i := range 3 {
		tag := fmt.Sprintf("cw-%d", i)
		if r := w.run(t, "echo "+tag); r.Code != 0 || r.Stdout != tag+"\n" {
			t.Fatalf("ssh %d: got exit %d %q %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	// Delivered while it runs, not only at the stop.
	waitFor(t, "session events in CloudWatch before the stop", 30*time.Second, func() bool {
		n := 0
		for _, e := range w.fake.LogEvents(region, cwGroup, cwStream) {
			if strings.Contains(e.Message, `"type":"session_end"`) {
				n++
			}
		}
		return n == 5
	})
	if m := scrape(t, w.admin); m["bastion_audit_cloudwatch_sent_total"] < 20 || m["bastion_audit_cloudwatch_dropped_total"] != 0 {
		t.Errorf("metrics: sent %v, dropped %v; want at least 20 sent and none dropped",
			m["bastion_audit_cloudwatch_sent_total"], m["bastion_audit_cloudwatch_dropped_total"])
	}
	w.stop(t, 60*time.Second)

	file := w.b.AuditLines(t)
	remote := readCloudWatch(t, w.fake)
	if len(file) < 20 || !strings.Contains(file[len(file)-1], `"reason":"stop"`) {
		t.Fatalf("audit.log: %d lines, last %q; want the sessions and the stop checkpoint", len(file), file[len(file)-1])
	}
	if !slices.Equal(remote, file) {
		t.Fatalf("CloudWatch holds %d lines, audit.log %d; want the same lines in the same order\nfirst CloudWatch lines: %q", len(remote), len(file), remote[:min(3, len(remote))])
	}
	checkSeq(t, remote, 1)
	copyPath := filepath.Join(t.TempDir(), "from-cloudwatch.jsonl")
	if err := os.WriteFile(copyPath, []byte(strings.Join(remote, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, pub := runBastion(t, "audit", "pubkey", "--config", w.b.Config)
	if code != 0 {
		t.Fatalf("bastion audit pubkey: exit %d\n%s", code, pub)
	}
	if code, out := runBastion(t, "audit", "verify", copyPath, "--pubkey", strings.TrimSpace(pub)); code != 0 {
		t.Fatalf("bastion audit verify on the CloudWatch copy: exit %d\n%s", code, out)
	}
	// The restarted bastion found its stream there already, and went on.
	var creates []string
	for _, c := range w.fake.Calls() {
		if c.Operation == "CreateLogStream" {
			creates = append(creates, c.ErrorCode)
		}
	}
	if !slices.Equal(creates, []string{"", "ResourceAlreadyExistsException"}) {
		t.Errorf("CreateLogStream answers: got %q, want one created, then ResourceAlreadyExistsException after the restart", creates)
	}
	// Timestamps never go back, as PutLogEvents wants within a batch.
	events := w.fake.LogEvents(region, cwGroup, cwStream)
	for i := 1; i < len(events); i++ {
		if events[i].Timestamp < events[i-1].Timestamp {
			t.Fatalf("event %d: timestamp %d before %d", i, events[i].Timestamp, events[i-1].Timestamp)
		}
	}
}
