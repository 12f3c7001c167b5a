package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/config"
	"bastion/internal/demo"
	"bastion/proxy"
)

// cmdDemo runs a bastion in front of a simulated AWS account: the AWS fake
// with Lightsail and EC2 instances that are in-process SSH servers (a real
// shell, as the person running the demo), and a bastion that reaches them
// with credentials from the fake. It writes a key, a config and an ssh
// config into --state and prints ready-to-paste ssh lines.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The parent is read first: one that dies while the demo starts
	// must still be noticed (read later, it would be the new parent).
	parent := os.Getppid()
	fs := newFlags("demo", stdout)
	state := fs.String("state", "demo-state", "folder for the demo's keys, config and audit log")
	listen := fs.String("listen", "127.0.0.1:2222", "address the demo bastion listens on")
	devLog := fs.Bool("dev-log", false, "human-readable logs instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "bastion.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(*devLog, logFile)
	defer log.Sync()
	me, err := user.Current()
	if err != nil {
		return err
	}

	account, err := demo.Start(ctx, log)
	if err != nil {
		return err
	}
	defer account.Close()
	keyPath, cfgPath, err := account.WriteState(dir, *listen)
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo config:\n%w", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopWatch := watchParent(ctx, parent, stop)
	defer stopWatch()
	b, err := assemble.New(ctx, cfg, assemble.Options{Logger: log, AWS: &account.AWS})
	if err != nil {
		return err
	}
	defer b.Close()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (choose another with --listen): %w", cfg.Listen, err)
	}
	sshConfig, knownHosts, err := writeDemoSSHConfig(dir, l.Addr().(*net.TCPAddr), keyPath, b.Server.HostKey.PublicKey(), b.Server.HostCA.PublicKey())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `bastion demo: a bastion on %s in front of a simulated AWS account
  (fake AWS API at %s; the instances are in-process SSH servers:
  whichever OS user you log in as, sessions run your shell as %s)

Try:
  ssh -F %[4]s -J bastion ec2-user@web-1        # Lightsail, Amazon Linux (temporary key + certificate)
  ssh -F %[4]s -J bastion ec2-user@api-1.ec2    # EC2 (key pushed with Instance Connect; host key read from its console)
  ssh -F %[4]s -J bastion port0@api-1.serial    # api-1's EC2 serial console (a simulated ttyS0; recorded)
  ssh -F %[4]s -l ubuntu+web-2 bastion          # Lightsail, Ubuntu; direct mode, for clients without ProxyJump
  scp -F %[4]s -J bastion %[5]s ec2-user@web-1:/tmp/
  ssh -F %[4]s -t bastion                       # pick a target from the list
  ssh -F %[4]s bastion list                     # the targets you may reach, as text
  ssh -F %[4]s bastion rdp win-1                # Lightsail Windows: its Remote Desktop login (capability rdp)

Remote Desktop: ssh -F %[4]s -N -L 13389:win-1:3389 bastion, then an RDP client
  to localhost:13389. win-1 has no desktop: its RDP endpoint is a stand-in that completes
  the RDP negotiation and the TLS handshake with the certificate Lightsail reports (the
  bastion checks it before any byte reaches you), then closes.

known_hosts lines that trust the bastion and its host CA for its targets (in %[6]s):
%[7]sAudit log: %[8]s    Recordings: %[10]s    Logs: %[9]s
Metrics: the admin address printed below (/metrics, /healthz, /readyz)
Ctrl-C stops the demo.
`, l.Addr(), account.Fake.URL(), me.Username, sshConfig, cfgPath, filepath.Join(dir, "known_hosts"), indent(knownHosts, "  "),
		filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "bastion.log"), filepath.Join(dir, "recordings"))
	err = serve(ctx, b, l, cfgPath, cfg.WatchConfig, cfg.Limits.DrainTimeout.D(), log)
	if errors.Is(err, proxy.ErrServerClosed) {
		return nil
	}
	return err
}

// writeDemoSSHConfig writes an ssh config naming the demo bastion
// "bastion", and a known_hosts that trusts its key and host CA, so the
// printed lines work with StrictHostKeyChecking=yes. It returns the
// config's path and the known_hosts text.
func writeDemoSSHConfig(dir string, addr *net.TCPAddr, keyPath string, hostKey, ca ssh.PublicKey) (string, string, error) {
	kh := filepath.Join(dir, "known_hosts")
	// The same trust `bastion ssh-config` hands out: the host CA for the
	// provider suffixes and the demo's target names, nothing else.
	names := append([]string{"*.lightsail", "*.ec2", "*.serial"}, demo.TargetNames()...)
	known := knownHostsLines(addr.IP.String(), strconv.Itoa(addr.Port), hostKey, ca, names)
	if err := os.WriteFile(kh, []byte(known), 0o644); err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "ssh_config")
	text := fmt.Sprintf(`# Written by "bastion demo".
Host bastion
  HostName %s
  Port %d
  User demo
Host *
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
`, addr.IP, addr.Port, keyPath, kh)
	return path, known, os.WriteFile(path, []byte(text), 0o644)
}

// indent prefixes every line of text with prefix.
func indent(text, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if line != "" {
			b.WriteString(prefix + line)
		}
	}
	return b.String()
}

// watchParent calls stop once the demo's parent process is gone (the demo
// is then re-parented, and Getppid is no longer parent), checking every
// 200ms until ctx is done. `go run ./cmd/bastion demo` runs the demo as a child of the
// go command; killing that by its pid would otherwise leave the demo
// orphaned, holding its ports. The returned function ends the watch.
func watchParent(ctx context.Context, parent int, stop func()) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					fmt.Fprintln(os.Stderr, "bastion demo: the process that started the demo has gone; stopping")
					stop()
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
