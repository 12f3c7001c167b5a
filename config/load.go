package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"bastion/internal/secfile"
	"bastion/upstream/provider"
)

// Load reads and parses the configuration file at path, as Parse does, and
// sets Config.Path to path.
//
// The file is refused if its group or others may write it: whoever can
// change it decides who gets in.
func Load(path string) (*Config, error) {
	return LoadWith(path, Options{})
}

// Options adjust LoadWith and ParseWith.
type Options struct {
	// SkipFiles leaves the files the config names (keys_file, private_key,
	// known_hosts, revoked_keys_file) unread and unchecked, for checking a
	// config away from the machine it is for (`bastion check-config
	// --no-file-checks`). A Config loaded so lacks the keys of keys_file
	// and revoked_keys_file: serve never uses it.
	SkipFiles bool
}

// LoadWith is Load with options.
func LoadWith(path string, o Options) (*Config, error) {
	data, err := secfile.ReadAccessFile(path)
	var me *secfile.ModeError
	if errors.As(err, &me) {
		return nil, &Error{File: path, Msg: me.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := ParseWith(data, path, o)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse parses and validates a configuration file's contents. path names the
// file in error messages and is the base of relative paths in it: they are
// resolved against path's folder (the current directory if path is "", in
// which case errors start with "config"). Paths resolved against a relative
// path stay relative to the current directory. Parse does not set
// Config.Path.
//
// Decoding is strict: unknown keys and values of the wrong type are errors.
// Keys left out get the Default* values. Files named by keys_file,
// private_key and known_hosts are read and checked, so Parse does I/O;
// host_key and host_ca_key need not exist (the server creates them); if
// they do, they are read and checked too. Private key files that group or
// others could use are refused, as are keys_file and revoked_keys_file
// files they could write (see package secfile).
//
// On failure the error holds every problem found, each an *Error on its own
// line ("config.yaml:12: users[1].keys[0]: not a public key in
// authorized_keys format"), joined with errors.Join and sorted by line; the
// Config is then nil.
func Parse(data []byte, path string) (*Config, error) {
	return ParseWith(data, path, Options{})
}

// ParseWith is Parse with options.
func ParseWith(data []byte, path string, o Options) (*Config, error) {
	file := path
	if file == "" {
		file = "config"
	}
	p := &problems{file: file, bad: make(map[string]bool), lines: make(map[string]int)}
	d := &decoder{p: p, set: make(map[string]bool)}
	var cfg Config
	root := readDocument(data, p)
	if err := p.err(); err != nil {
		return nil, err
	}
	if root != nil {
		d.decode(root, reflect.ValueOf(&cfg).Elem(), "", root.Line)
	}
	// Keys missing at the top level are reported at line 1.
	p.lines[""] = 1
	renameDeprecated(&cfg, d.set, p)
	applyDefaults(&cfg, d.set)
	resolvePaths(&cfg, filepath.Dir(path))
	ssoDefaults(&cfg, d.set)
	(&checker{problems: p, skipFiles: o.SkipFiles}).check(&cfg)
	if err := p.err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(p.warns, func(a, b *Error) int { return a.Line - b.Line })
	cfg.Warnings = p.warns
	return &cfg, nil
}

// applyDefaults fills in keys left out of the file. set holds the key paths
// that had a value in the file: a value written out, even 0, is kept (and
// validated), except for the timeouts below, where 0 means the default
// because the server never runs a handshake, dial or AWS call without one.
func applyDefaults(c *Config, set map[string]bool) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	l := &c.Limits
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = Duration(DefaultHandshakeTimeout)
	}
	if l.DialTimeout == 0 {
		l.DialTimeout = Duration(DefaultDialTimeout)
	}
	if l.AWSTimeout == 0 {
		l.AWSTimeout = Duration(DefaultAWSTimeout)
	}
	if !set["limits.max_auth_tries"] {
		l.MaxAuthTries = DefaultMaxAuthTries
	}
	if !set["limits.drain_timeout"] {
		l.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if !set["limits.max_unauthenticated"] {
		l.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if !set["limits.failed_auth_per_minute"] {
		l.FailedAuthPerMinute = DefaultFailedAuthPerMinute
	}
	if !set["limits.max_links_per_connection"] {
		l.MaxLinksPerConnection = DefaultMaxLinksPerConnection
	}
	if c.Audit.OnFailure == "" {
		c.Audit.OnFailure = OnFailureRefuse
	}
	if !set["audit.max_recording_size"] {
		c.Audit.MaxRecordingSize = DefaultMaxRecordingSize
	}
	if !set["audit.min_free_space"] {
		c.Audit.MinFreeSpace = DefaultMinFreeSpace
	}
	if c.Audit.S3 != nil && !set["audit.s3.flush_interval"] {
		c.Audit.S3.FlushInterval = Duration(DefaultS3FlushInterval)
	}
	if !set["audit.checkpoint_interval"] {
		c.Audit.CheckpointInterval = Duration(DefaultCheckpointInterval)
	}
	cloudWatchDefaults(c.Audit.CloudWatch, set)
	// Provider defaults are the values of their descriptors (package
	// provider); this is the layer that applies them to a file, see
	// awsutil.Settings.
	if ls := c.Providers.Lightsail; ls != nil {
		if ls.Address == "" {
			ls.Address = provider.Lightsail.DefaultAddress
		}
		if !set["providers.lightsail.port"] {
			ls.Port = provider.Lightsail.DefaultPort
		}
		if !set["providers.lightsail.resolve_cache"] {
			ls.ResolveCache = Duration(provider.Lightsail.DefaultResolveCache)
		}
		if !set["providers.lightsail.rdp_port"] {
			ls.RDPPort = DefaultRDPPort
		}
	}
	if e := c.Providers.EC2; e != nil {
		if e.Address == "" {
			e.Address = provider.EC2.DefaultAddress
		}
		if e.HostKeys == "" {
			e.HostKeys = HostKeysTOFU
		}
		if !set["providers.ec2.port"] {
			e.Port = provider.EC2.DefaultPort
		}
		if !set["providers.ec2.resolve_cache"] {
			e.ResolveCache = Duration(provider.EC2.DefaultResolveCache)
		}
	}
}

// renameDeprecated moves the values of deprecated keys to the keys that
// replaced them, with a warning for each one used. A file that sets both
// names of one key is an error.
func renameDeprecated(c *Config, set map[string]bool, p *problems) {
	l := &c.Limits
	for _, r := range []struct {
		old, new string
		from, to *int
	}{
		{"limits.max_sessions", "limits.max_links", &l.MaxSessions, &l.MaxLinks},
		{"limits.max_sessions_per_user", "limits.max_links_per_user", &l.MaxSessionsPerUser, &l.MaxLinksPerUser},
	} {
		if !set[r.old] {
			continue
		}
		switch {
		case set[r.new]:
			p.errorf(r.old, "set only %s; %s is its deprecated name", r.new, r.old)
			continue
		case *r.from < 0:
			p.errorf(r.old, "must not be negative (0 means no limit)")
			continue
		}
		*r.to, *r.from = *r.from, 0
		set[r.new] = true
		p.warnf(r.old, "deprecated; use %s (it counts links and inner logins in progress, not connections)", r.new)
	}
}

// resolvePaths joins the relative file paths in c to dir, the folder of the
// config file. audit.log "stdout" is not a path and is left alone.
func resolvePaths(c *Config, dir string) {
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, key := range []*string{&c.HostKey, &c.HostCAKey} {
		if !IsAWSKeyRef(*key) {
			resolve(key)
		}
	}
	for i := range c.Users {
		resolve(&c.Users[i].KeysFile)
	}
	if e := c.Providers.EC2; e != nil {
		resolve(&e.KnownHosts)
	}
	if ls := c.Providers.Lightsail; ls != nil {
		for name, path := range ls.RDPKeyPairs {
			resolve(&path)
			ls.RDPKeyPairs[name] = path
		}
	}
	for i := range c.Providers.Static {
		resolve(&c.Providers.Static[i].PrivateKey)
		resolve(&c.Providers.Static[i].KnownHosts)
	}
	if c.Audit.Log != "stdout" {
		resolve(&c.Audit.Log)
	}
	resolve(&c.Audit.Recordings)
	resolve(&c.Audit.SigningKey)
	resolve(&c.RevokedKeysFile)
	if c.SSO != nil {
		resolve(&c.SSO.ClientSecretFile)
		resolve(&c.SSO.BindingsFile)
	}
}

// AWS key references: host_key and host_ca_key may name an SSM parameter
// (SecureString) or a Secrets Manager secret instead of a file, so that a
// fleet of replicas shares them without a file on disk.
const (
	KeyRefSSM            = "ssm:"
	KeyRefSecretsManager = "secretsmanager:"
)

// IsAWSKeyRef reports whether a host_key or host_ca_key value names an SSM
// parameter or a Secrets Manager secret rather than a file.
func IsAWSKeyRef(s string) bool {
	return strings.HasPrefix(s, KeyRefSSM) || strings.HasPrefix(s, KeyRefSecretsManager)
}
