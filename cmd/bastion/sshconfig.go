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
	"regexp"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/config"
	"bastion/proxy"
	"bastion/upstream"
	"bastion/upstream/provider"
)

// cmdSSHConfig prints what a person's OpenSSH needs to use the bastion: an
// ~/.ssh/config stanza that sends *.lightsail and *.ec2 (and any --hosts
// patterns) through it, and the known_hosts lines that trust the bastion's
// key and its host CA. The CA is trusted for the --hosts patterns and for
// the bare names of the targets the configured providers list now, so that
// `ssh -J bastion ec2-user@web-1` verifies and no other name does. With
// --write it adds them to the files, replacing an older line for the same
// CA.
// defaultHostPatterns returns "*.lightsail *.ec2 *.static": a Host pattern
// for each registered provider's target suffix.
func defaultHostPatterns() string {
	var pats []string
	for _, s := range provider.Suffixes() {
		pats = append(pats, "*"+s)
	}
	return strings.Join(pats, " ")
}

func cmdSSHConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ssh-config", stdout)
	cf := addConfigFlag(fs)
	host := fs.String("host", "", "the bastion's address as people reach it (default: the listen address)")
	user := fs.String("user", "", "the person's bastion user name (default: ssh's default)")
	hosts := fs.String("hosts", defaultHostPatterns(), "space-separated Host patterns to send through the bastion")
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
	names, err := targetNames(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "bastion ssh-config: listing targets: %s\n"+
			"bastion ssh-config: the host CA is trusted for %s only: `ssh -J bastion web-1` needs a name such as web-1.ec2\n",
			upstream.PublicMessage(err), strings.Join(strings.Fields(*hosts), ","))
	}
	stanza := sshConfigStanza(hostName, port, *user, *hosts)
	known := knownHostsLines(hostName, port, hostKey, hostCA, append(strings.Fields(*hosts), names...))
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
	for _, f := range []struct {
		name, text string
		replace    func(line string) bool
	}{
		{"config", stanza, nil},
		{"known_hosts", known, caLine(hostCA)},
	} {
		p := filepath.Join(dir, f.name)
		added, err := appendOnce(p, f.text, f.replace)
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

// targetNames returns the names a person may type bare for the targets the
// configured providers have now: static names, Lightsail names, EC2 Name
// tags and instance ids, sorted and without duplicates. Names that are not
// plain, dotless host names are left out: a tag with a space, a comma or a
// star cannot be a known_hosts pattern, and a dotted one ("github.com",
// set by whoever may tag an instance) would make laptops trust the
// bastion's CA for a host on the internet; such targets are reached with
// their suffix ("github.com.ec2"). The AWS providers are asked with the
// SDK's default credentials, as serve asks them.
func targetNames(ctx context.Context, cfg *config.Config) ([]string, error) {
	set := map[string]bool{}
	for _, st := range cfg.Providers.Static {
		set[st.Name] = true
	}
	providers, err := assemble.AWSProviders(ctx, cfg, assemble.Options{})
	if err == nil && len(providers) > 0 {
		lctx, cancel := context.WithTimeout(ctx, 2*cfg.Limits.AWSTimeout.D())
		var all []upstream.Target
		all, err = (&upstream.Resolver{Providers: providers}).List(lctx)
		cancel()
		for _, t := range all {
			set[t.Name] = true
			if t.ID != "" {
				set[t.ID] = true
			}
		}
	}
	var names []string
	for n := range set {
		if hostNameRE.MatchString(n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, err
}

// hostNameRE matches the names targetNames puts in a known_hosts pattern
// list: no pattern characters, commas, spaces or dots.
var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

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
		s, err := assemble.LoadHostKey(context.Background(), cfg, key, value)
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

// knownHostsLines returns the known_hosts lines that trust the bastion's
// host key at host:port and its host CA for names (patterns and plain
// names), with a comment saying how to refresh them.
func knownHostsLines(host, port string, hostKey, ca ssh.PublicKey, names []string) string {
	name := host
	if port != "22" {
		name = fmt.Sprintf("[%s]:%s", host, port)
	}
	key := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	return fmt.Sprintf("%s %s\n# %s: the bastion's host CA, for its targets; run `bastion ssh-config --write` again when targets are added\n@cert-authority %s %s\n",
		name, key(hostKey), name, strings.Join(names, ","), key(ca))
}

// caLine returns a predicate that reports whether a known_hosts line is an
// @cert-authority line for ca, or the comment knownHostsLines writes above
// one: the lines a new run replaces.
func caLine(ca ssh.PublicKey) func(string) bool {
	want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca)))
	return func(line string) bool {
		if strings.HasPrefix(line, "# ") && strings.HasSuffix(line, "run `bastion ssh-config --write` again when targets are added") {
			return true
		}
		f := strings.Fields(line)
		return len(f) >= 4 && f[0] == "@cert-authority" && f[2]+" "+f[3] == want
	}
}

// appendOnce appends text to the file at path (created 0600 with its
// folder 0700) unless the file already contains it. With replace (not
// nil), the lines it reports true for and the lines of text already there
// are removed first, so that a newer text takes the place of an older one.
// It reports whether it wrote.
func appendOnce(path, text string, replace func(line string) bool) (bool, error) {
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
	if replace != nil {
		ours := map[string]bool{}
		for _, line := range strings.Split(text, "\n") {
			ours[line] = true
		}
		var kept []string
		for _, line := range strings.SplitAfter(string(old), "\n") {
			if l := strings.TrimRight(line, "\n"); line != "" && !replace(l) && !ours[l] {
				kept = append(kept, line)
			}
		}
		if pruned := strings.Join(kept, ""); pruned != string(old) {
			if err := os.WriteFile(path, []byte(pruned), 0o600); err != nil {
				return false, err
			}
			old = []byte(pruned)
		}
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
