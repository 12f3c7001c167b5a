package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"bastion/internal/testkit"
)

// fleetWorld is three bastion replicas (a, b, c) sharing one fleet table
// on dynalite and one host key, in front of a real sshd (static target
// web-1): bob is in the session_control group ops, carol and dave in dev,
// and max_links_per_user is 2 (own sessions such as `sessions` count as
// links too).
type fleetWorld struct {
	dynalite *testkit.Dynalite
	env      []string
	body     func(replica string) string
	replicas map[string]*bastionProc
	admin    map[string]string
	bob      map[string]*client
	carol    map[string]*client
	dave     map[string]*client
	bobKey   keypair
	carolKey keypair
	daveKey  keypair
	me       string
}

func newFleetWorld(t *testing.T) *fleetWorld {
	t.Helper()
	d := testkit.StartDynalite(t)
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	w := &fleetWorld{dynalite: d, me: me, bobKey: newKey(t, dir, "bob"), carolKey: newKey(t, dir, "carol"), daveKey: newKey(t, dir, "dave"),
		replicas: map[string]*bastionProc{}, admin: map[string]string{}, bob: map[string]*client{}, carol: map[string]*client{}, dave: map[string]*client{}}
	w.env = []string{"AWS_ENDPOINT_URL_DYNAMODB=" + d.URL, "AWS_ACCESS_KEY_ID=AKIDFLEET", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	users := fmt.Sprintf("users:\n  - {name: bob, keys: [%q], groups: [ops]}\n  - {name: carol, keys: [%q], groups: [dev]}\n  - {name: dave, keys: [%q], groups: [dev]}\n",
		w.bobKey.AuthorizedKey(), w.carolKey.AuthorizedKey(), w.daveKey.AuthorizedKey())
	w.body = func(replica string) string {
		return "admin_listen: 127.0.0.1:0\n" + users + "providers:\n  static:\n" +
			fmt.Sprintf("    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}\n", up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()) +
			"policies:\n  - {groups: [ops, dev], targets: [\"*\"], os_users: [\"*\"]}\n" +
			"session_control: {groups: [ops]}\n" +
			"limits: {max_links_per_user: 2, failed_auth_per_minute: 3}\n" +
			fmt.Sprintf("fleet: {dynamodb_table: bastion-fleet, replica: %s, advertise: \"127.0.0.1:0\"}\n", replica)
	}
	cfg := filepath.Join(dir, "init.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\nhost_key: host_ed25519\nhost_ca_key: host_ca_ed25519\n"+w.body("init"), 0o600)
	cmd := exec.Command(bastionBin, "fleet", "init", "--config", cfg)
	cmd.Env = append(os.Environ(), w.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fleet init: %v\n%s", err, out)
	}
	var keysFrom string
	for _, name := range []string{"a", "b", "c"} {
		rdir := t.TempDir()
		if keysFrom != "" {
			// The replicas share the host key (and host CA), as a
			// Kubernetes secret shares it.
			for _, f := range []string{"host_ed25519", "host_ca_ed25519"} {
				data, err := os.ReadFile(filepath.Join(keysFrom, f))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(rdir, f), string(data), 0o600)
			}
		}
		w.start(t, name, rdir)
		keysFrom = rdir
	}
	return w
}

// start starts replica name with its files in dir.
func (w *fleetWorld) start(t *testing.T, name, dir string) {
	t.Helper()
	b := startBastionIn(t, dir, w.body(name), w.env...)
	m := adminRE.FindStringSubmatch(b.proc.out.String())
	if m == nil {
		t.Fatalf("replica %s printed no admin address:\n%s", name, b.proc.out.String())
	}
	w.replicas[name], w.admin[name] = b, m[1]
	w.bob[name] = newClient(t, b, "bob", w.bobKey)
	w.carol[name] = newClient(t, b, "carol", w.carolKey)
	w.dave[name] = newClient(t, b, "dave", w.daveKey)
}

// background starts c's jump session to web-1 with args (a command, or -tt
// and a command).
func (w *fleetWorld) background(t *testing.T, c *client, args ...string) *process {
	t.Helper()
	all := append([]string{"-F", c.ConfigPath, "-J", "bastion"}, args...)
	return startProcess(t, exec.Command("ssh", all...))
}

// listing is c's `sessions` output.
func listing(t *testing.T, c *client) result {
	t.Helper()
	return c.ssh(t, nil, "bastion", "sessions")
}

// linkOn returns the id of user's link on replica in a listing.
func linkOn(out, user, replica string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[1] == user && f[4] == replica {
			return f[0]
		}
	}
	return ""
}

// adminGet returns the body of path on replica's admin server.
func (w *fleetWorld) adminGet(t *testing.T, replica, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + w.admin[replica] + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// metric returns the value of a series line prefix in replica's metrics,
// or "".
func (w *fleetWorld) metric(t *testing.T, replica, series string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(w.adminGet(t, replica, "/metrics"))
	if m == nil {
		return ""
	}
	return m[1]
}

// TestFleetThreeReplicas: three replicas on one table. sessions on c
// lists the links held on a and b; a kill from c ends a's link, with the
// message; a watch from c streams a's pty session, whose person is told;
// max_links_per_user holds across replicas; an address's failed logins on
// a count on b; and with the table stopped, sessions still lists the
// replica's own links with a one-line warning, a link is admitted on the
// local count, and /readyz and the metric say the store is degraded.
func TestFleetThreeReplicas(t *testing.T) {
	w := newFleetWorld(t)
	carolA := w.background(t, w.carol["a"], "-tt", w.me+"@web-1", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.2; done")
	daveB := w.background(t, w.dave["b"], w.me+"@web-1", "sleep 300")

	var out string
	waitFor(t, "c to list a's and b's links", 30*time.Second, func() bool {
		out = listing(t, w.bob["c"]).Stdout
		return linkOn(out, "carol", "a") != "" && linkOn(out, "dave", "b") != ""
	})
	carolID := linkOn(out, "carol", "a")
	if own := listing(t, w.carol["c"]).Stdout; linkOn(own, "carol", "a") != carolID || linkOn(own, "dave", "b") != "" {
		t.Errorf("carol on c sees:\n%s\nwant her own link on a and not dave's", own)
	}

	// watch from c streams what carol's pty session on a prints.
	// Its input stays open: closing it would end the watch.
	watchCmd := exec.Command("ssh", "-F", w.bob["c"].ConfigPath, "-tt", "bastion", "watch", carolID)
	watchIn, err := watchCmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer watchIn.Close()
	watch := startProcess(t, watchCmd)
	waitFor(t, "the watch on c to stream a's ticks", 30*time.Second, func() bool {
		return strings.Contains(watch.out.String(), "tick-")
	})
	waitFor(t, "carol to be told she is watched", 30*time.Second, func() bool {
		return strings.Contains(carolA.out.String(), "session_control user bob is watching this session")
	})

	// max_links_per_user: 2 holds across replicas: carol has one on a,
	// a second on b is admitted, a third on c is refused.
	// Her `sessions` on c a moment ago counted as a link until c wrote
	// its end to the store (at once, in the background): the first try
	// may meet it.
	var carolB *process
	waitFor(t, "carol's second link, on b, to be admitted and listed", 30*time.Second, func() bool {
		if carolB == nil || carolB.Exited() {
			if carolB != nil && !strings.Contains(carolB.out.String(), "across the bastion's replicas") {
				t.Fatalf("carol's second link, on b, ended: %s", carolB.out.String())
			}
			carolB = w.background(t, w.carol["b"], w.me+"@web-1", "sleep 300")
		}
		return linkOn(listing(t, w.bob["c"]).Stdout, "carol", "b") != ""
	})
	r := w.carol["c"].ssh(t, nil, "-J", "bastion", w.me+"@web-1", "true")
	if r2 := listing(t, w.bob["c"]); r2.Code != 0 {
		t.Errorf("bob's sessions on c: exit %d, %s", r2.Code, r2.Stderr)
	}
	if r.Code == 0 || !strings.Contains(r.Stderr, "across the bastion's replicas") {
		t.Errorf("carol's third link, on c: exit %d, stderr %q; want refused across replicas", r.Code, r.Stderr)
	}
	if !auditLineHas(w.replicas["c"].AuditLines(t), `"limit":"max_links_per_user"`) {
		t.Errorf("c wrote no limit_exceeded event for max_links_per_user")
	}
	carolB.Stop()

	// kill from c ends carol's link on a, with the message, and the
	// watch on c ends with it.
	start := time.Now()
	r = w.bob["c"].ssh(t, nil, "bastion", "kill", carolID)
	if r.Code != 0 || !strings.Contains(r.Stdout, "on replica a") {
		t.Fatalf("kill from c: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	select {
	case <-carolA.done:
	case <-time.After(30 * time.Second):
		t.Fatal("carol's link on a still runs 30 s after the kill from c")
	}
	t.Logf("kill from c ended the link on a %s after the request", time.Since(start).Round(10*time.Millisecond))
	if !strings.Contains(carolA.out.String(), "ended by session_control user bob") {
		t.Errorf("carol was not told why: %q", carolA.out.String())
	}
	if !auditLineHas(w.replicas["a"].AuditLines(t), `"type":"session_killed"`) || !auditLineHas(w.replicas["c"].AuditLines(t), `"type":"kill_requested"`) {
		t.Errorf("want session_killed on a and kill_requested on c")
	}
	waitFor(t, "the watch to end with the watched session", 30*time.Second, func() bool {
		select {
		case <-watch.done:
			return true
		default:
			return false
		}
	})
	if !auditLineHas(w.replicas["c"].AuditLines(t), `"type":"watch_start"`) || !auditLineHas(w.replicas["a"].AuditLines(t), `"by":"bob@c"`) {
		t.Errorf("want watch_start on c and on a (by bob@c)")
	}

	// Penalties follow an address: three failed logins on a, then one on
	// b, and b delays the next connection (alone, one failure on b is
	// within its allowance of 3 a minute).
	stranger := newKey(t, t.TempDir(), "stranger")
	for i := range 4 {
		name := "a"
		if i == 3 {
			name = "b"
		}
		c := newClient(t, w.replicas[name], "mallory", stranger)
		if r := c.ssh(t, nil, "bastion", "list"); r.Code == 0 {
			t.Fatalf("a stranger's key logged in to %s", name)
		}
	}
	waitFor(t, "b to count a's failures", 30*time.Second, func() bool {
		c := newClient(t, w.replicas["b"], "mallory", stranger)
		c.ssh(t, nil, "bastion", "list")
		v := w.metric(t, "b", `bastion_limit_hits_total{limit="failed_auth_delay"}`)
		return v != "" && v != "0"
	})

	// The table stops. b's own link (dave's) is still listed, with a one-line
	// warning; carol gets a link on the local count; /readyz says the
	// store is degraded (and stays ready), and so does the metric.
	w.dynalite.Stop()
	r = listing(t, w.bob["b"])
	if r.Code != 0 || linkOn(r.Stdout, "dave", "b") == "" || !strings.Contains(r.Stderr, "fleet store is unreachable") {
		t.Errorf("sessions on b with the table stopped: exit %d, %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := w.carol["b"].ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo local-ok"); r.Code != 0 || r.Stdout != "local-ok\n" {
		t.Errorf("carol's link on b with the table stopped: exit %d, %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if ready := w.adminGet(t, "b", "/readyz"); !strings.HasPrefix(ready, "ready") || !strings.Contains(ready, "fleet store: degraded") {
		t.Errorf("/readyz on b with the table stopped:\n%s", ready)
	}
	if v := w.metric(t, "b", "bastion_fleet_store_degraded"); v != "1" {
		t.Errorf("bastion_fleet_store_degraded on b = %q; want 1", v)
	}
	daveB.Stop()
}
