package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/config"
	"bastion/proxy"
	"bastion/sso"
	"bastion/upstream/secretref"
)

// cmdCheckConfig validates a config file the way serve does, for CI
// pipelines and a unit's pre-start: exit 0 and "ok" (after a "warning:"
// line per doubtful but valid setting, such as a deprecated key), or exit 1
// with one line per problem.
func cmdCheckConfig(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("check-config", stdout)
	cf := addConfigFlag(fs)
	noFiles := fs.Bool("no-file-checks", false, "do not read the files the config names (keys_file, private_key, known_hosts, revoked_keys_file, host keys): check a config away from its machine")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.loadWith(config.Options{SkipFiles: *noFiles})
	if err != nil {
		return err
	}
	if err := preflight(ctx, cfg, !*noFiles); err != nil {
		return fmt.Errorf("invalid config:\n%w", err)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	extra := ""
	if cfg.SSO != nil {
		extra = ", sso " + cfg.SSO.Issuer
	}
	fmt.Fprintf(stdout, "%s: ok (%d users, %d policies%s)\n", *cf.path, len(cfg.Users), len(cfg.Policies), extra)
	return nil
}

// preflight runs on cfg the parsers serve runs at start beyond
// config.Load, without creating or fetching anything: the host key
// references (as loadHostKey parses them) and the host key files that
// exist, and the providers' constructors (static keys and pinned host
// keys, the AWS providers' settings). With files false, nothing the config
// names on disk is read. Every problem is returned, joined.
func preflight(ctx context.Context, cfg *config.Config, files bool) error {
	var errs []error
	// One line per problem, each naming the file, as config's do.
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{cfg.Path}, args...)...))
	}
	for _, k := range []struct{ key, value string }{{"host_key", cfg.HostKey}, {"host_ca_key", cfg.HostCAKey}} {
		ref, err := secretref.Parse(k.value)
		if err != nil {
			add("%s: %w", k.key, err)
			continue
		}
		if ref.IsAWS() || !files {
			continue
		}
		// An existing file (a dangling symlink too) must be a key serve
		// can use; a missing one is created at start.
		if _, err := os.Lstat(k.value); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if _, _, err := proxy.LoadOrCreateKey(k.value); err != nil {
			add("%s: %w", k.key, err)
		}
	}
	var err error
	if files {
		_, err = assemble.Providers(ctx, cfg, assemble.Options{})
	} else {
		_, err = assemble.AWSProviders(ctx, cfg, assemble.Options{})
		for _, st := range cfg.Providers.Static {
			if st.HostKey == "" {
				continue
			}
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(st.HostKey)); err != nil {
				add("providers.static %s: host_key: %w", st.Name, err)
			}
		}
	}
	if err != nil {
		add("%w", err)
	}
	// serve refuses to start on a bindings file it cannot parse, rather
	// than drop every SSO login in it.
	if s := cfg.SSO; s != nil && cfg.Fleet == nil && files {
		if _, err := sso.OpenFileStore(s.BindingsFile, s.MaxBindings, nil); err != nil {
			add("sso.bindings_file: %w", err)
		}
	}
	return errors.Join(errs...)
}
