package e2e

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"bastion/audit/recording"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// tickRE finds the counter lines the session prints (not the typed
// command, which has no digits after "tick-").
var tickRE = regexp.MustCompile(`tick-([0-9]+)`)

// lastTick returns the highest counter in data, 0 if none.
func lastTick(data []byte) int {
	n := 0
	for _, m := range tickRE.FindAllSubmatch(data, -1) {
		if v, err := strconv.Atoi(string(m[1])); err == nil && v > n {
			n = v
		}
	}
	return n
}

// TestHostileS3StreamCrash kills the bastion with SIGKILL during a pty
// session that prints a counter every 100 ms, with audit.s3.flush_interval
// 2s: the recording reassembled from the pieces in S3 (gofakes3, real SDK
// client) must hold the session up to at most the flush interval, plus the
// recorder's 1 s flush and a margin for the loaded machine, before the
// kill.
func TestHostileS3StreamCrash(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("recs"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gofakes3.New(backend).Server()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	addr := l.Addr().String()

	w := newAuditWorld(t, "  s3: {bucket: recs, prefix: bastion/, region: us-east-1, flush_interval: 2s}\n", "",
		"AWS_ENDPOINT_URL_S3=http://"+addr, "AWS_ACCESS_KEY_ID=AKIDFAKE", "AWS_SECRET_ACCESS_KEY=fake-secret",
		"AWS_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	sh := startPTYShell(t, w.bob, "-J", "bastion", w.me+"@web-1")
	sh.send(t, "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.1; done", "tick-60")

	var part string
	matches, _ := filepath.Glob(filepath.Join(w.rec, "*"+recording.Ext+recording.PartExt))
	if len(matches) != 1 {
		t.Fatalf("got live recordings %q, want one", matches)
	}
	part = matches[0]
	seen := lastTick([]byte(sh.out.String()))
	w.b.proc.Stop() // SIGKILL by pid: no Close, no final upload
	killed := time.Now()

	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://" + addr),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake-secret", ""),
	})
	key := "bastion/" + strings.TrimSuffix(filepath.Base(part), recording.PartExt)
	var got bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pieces, err := recording.Fetch(ctx, client, "recs", key, &got)
	if err != nil {
		t.Fatalf("reassembling %s from S3 after the kill: %v", key, err)
	}
	// The same through `bastion audit fetch`, with serve's SDK client.
	for _, kv := range [][2]string{{"AWS_ENDPOINT_URL_S3", "http://" + addr}, {"AWS_ACCESS_KEY_ID", "AKIDFAKE"}, {"AWS_SECRET_ACCESS_KEY", "fake-secret"},
		{"AWS_REGION", "us-east-1"}, {"AWS_CONFIG_FILE", "/dev/null"}, {"AWS_SHARED_CREDENTIALS_FILE", "/dev/null"}, {"AWS_EC2_METADATA_DISABLED", "true"}} {
		t.Setenv(kv[0], kv[1])
	}
	fetched := filepath.Join(t.TempDir(), "fetched.cast")
	name := strings.TrimPrefix(key, "bastion/")
	if code, msg := runBastion(t, "audit", "fetch", "--config", w.b.Config, name, "-o", fetched); code != 0 || !strings.Contains(msg, "reassembled from") {
		t.Errorf("bastion audit fetch: got %d %q, want 0 and a line saying it reassembled", code, msg)
	}
	if data, _ := os.ReadFile(fetched); !bytes.Equal(data, got.Bytes()) {
		t.Errorf("bastion audit fetch -o: got %d bytes, want the %d reassembled", len(data), got.Len())
	}
	local, _ := os.ReadFile(part)
	if !bytes.HasPrefix(local, got.Bytes()) {
		t.Errorf("got %d bytes from S3 that are not a prefix of the %d-byte local file", got.Len(), len(local))
	}
	inS3 := lastTick(got.Bytes())
	// 2 s flush_interval + 1 s recorder flush + 3 s margin for the loaded
	// machine, in 100 ms ticks (on a loaded machine ticks come slower, so
	// this only errs on the lenient side).
	const maxLost = (2 + 1 + 3) * 10
	t.Logf("killed at %s: the client saw tick-%d, S3 holds tick-%d in %d pieces (%d bytes)", killed.Format(time.RFC3339Nano), seen, inS3, pieces, got.Len())
	if pieces == 0 {
		t.Errorf("got the final object of a recording that never finished, want pieces")
	}
	if inS3 == 0 || seen-inS3 > maxLost {
		t.Errorf("S3 holds the session up to tick-%d, the client saw tick-%d: lost %d ticks, want at most %d", inS3, seen, seen-inS3, maxLost)
	}
}
