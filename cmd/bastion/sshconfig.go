package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/config"
	"bastion/proxy"
)

// cmdSSHConfig prints what a person's OpenSSH needs to use the bastion: an
// ~/.ssh/config stanza that sends *.lightsail and *.ec2 (and any --hosts
// patterns) through it, and the known_hosts lines that trust the bastion's
// key and its host CA. With --write it adds them to the files, once.
func cmdSSHConfig(args []string, stdout io.Writer) error {
	fs := newFlags("ssh-config", stdout)
	cf := addConfigFlag(fs)
	host := fs.String("host", "", "the bastion's address as people reach it (default: the listen address)")
	user := fs.String("user", "", "the person's bastion user name (default: ssh's default)")
	hosts := fs.String("hosts", "*.lightsail *.ec2 *.static", "space-separated Host patterns to send through the bastion")
	write := fs.Bool("write", false, "append to ~/.ssh/config and ~/.ssh/known_hosts unless already there")
	sshDir := fs.String("ssh-dir", "", "folder of config and known_hosts for --write (default ~/.ssh)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	hostName, port, err := bastionAddress(*host, cfg.Listen)
	if err != nil {
		return err
	}
	hostKey, err := existingPublicKey(cfg, "host_key", cfg.HostKey)
	if err != nil {
		return err
	}
	hostCA, err := existingPublicKey(cfg, "host_ca_key", cfg.HostCAKey)
	if err != nil {
		return err
	}
	stanza := sshConfigStanza(hostName, port, *user, *hosts)
	known := knownHostsLines(hostName, port, hostKey, hostCA, *hosts)
	if !*write {
		fmt.Fprintf(stdout, "# ~/.ssh/config\n%s\n# ~/.ssh/known_hosts\n%s", stanza, known)
		return nil
	}
	dir := *sshDir
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		dir = filepath.Join(home, ".ssh")
	}
	for _, f := range []struct{ name, text string }{{"config", stanza}, {"known_hosts", known}} {
		p := filepath.Join(dir, f.name)
		added, err := appendOnce(p, f.text)
		if err != nil {
			return err
		}
		if added {
			fmt.Fprintf(stdout, "added to %s\n", p)
		} else {
			fmt.Fprintf(stdout, "%s already has it\n", p)
		}
	}
	return nil
}

// bastionAddress returns the host and port people use: --host if given
// (with or without a port), else the listen address.
func bastionAddress(flagHost, listen string) (string, string, error) {
	_, listenPort, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("listen %q: %w", listen, err)
	}
	if flagHost == "" {
		h, _, _ := net.SplitHostPort(listen)
		if h == "" || h == "0.0.0.0" || h == "::" {
			return "", "", usageError{"--host is required when listen has no host name"}
		}
		return h, listenPort, nil
	}
	if h, p, err := net.SplitHostPort(flagHost); err == nil {
		return h, p, nil
	}
	return flagHost, listenPort, nil
}

// existingPublicKey reads the public half of a key the server uses: a file
// it created, or an SSM parameter or Secrets Manager secret (read with the
// SDK's default credentials).
func existingPublicKey(cfg *config.Config, key, value string) (ssh.PublicKey, error) {
	if config.IsAWSKeyRef(value) {
		s, err := loadHostKey(context.Background(), key, value, &awsLoader{}, cfg.Limits.AWSTimeout.D(), zap.NewNop(), nil)
		if err != nil {
			return nil, err
		}
		return s.PublicKey(), nil
	}
	if _, err := os.Stat(value); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %s does not exist yet: start the bastion once (bastion serve) to create it", key, value)
	}
	s, _, err := proxy.LoadOrCreateKey(value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return s.PublicKey(), nil
}

func sshConfigStanza(host, port, user, patterns string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bastion %s:%s\nHost bastion\n  HostName %s\n  Port %s\n", host, port, host, port)
	if user != "" {
		fmt.Fprintf(&b, "  User %s\n", user)
	}
	fmt.Fprintf(&b, "Host %s\n  ProxyJump bastion\n", patterns)
	return b.String()
}

func knownHostsLines(host, port string, hostKey, ca ssh.PublicKey, patterns string) string {
	name := host
	if port != "22" {
		name = fmt.Sprintf("[%s]:%s", host, port)
	}
	key := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	return fmt.Sprintf("%s %s\n@cert-authority %s %s\n", name, key(hostKey), strings.Join(strings.Fields(patterns), ","), key(ca))
}

// appendOnce appends text to the file at path (created 0600 with its
// folder 0700) unless the file already contains it. It reports whether it
// wrote.
func appendOnce(path, text string) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if bytes.Contains(old, []byte(text)) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	prefix := ""
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		prefix = "\n"
	}
	if _, err := f.WriteString(prefix + text); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}
