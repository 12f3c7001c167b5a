package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"bastion/internal/secfile"
	"bastion/upstream/provider"
)

var (
	userNameRe   = regexp.MustCompile(`^[a-z_][a-z0-9._-]*$`)
	targetNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	regionRe     = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$`)
)

// capabilities are the values allowed in a policy's allow and deny lists.
var capabilities = []string{CapShell, CapExec, CapSFTP, CapSCP, CapPortForwarding, CapAgentForwarding, CapX11, CapSerialConsole}

// checker validates a decoded, defaulted Config, recording every problem,
// and fills in the fields computed from it (User.PublicKeys and
// Config.TrustedUserCAs).
type checker struct {
	*problems
	// keyOwners maps a public key's wire form to the user it was first
	// listed for, so that one key cannot stand for two people.
	keyOwners map[string]string
	// skipFiles is Options.SkipFiles: named files are not read.
	skipFiles bool
}

// check validates cfg as a whole, in file order, so that problems found on
// one line come out in a natural order.
func (c *checker) check(cfg *Config) {
	c.keyOwners = make(map[string]string)
	c.checkListen("listen", cfg.Listen)
	if cfg.AdminListen != "" {
		c.checkListen("admin_listen", cfg.AdminListen)
	}
	if cfg.HostKey == "" {
		c.errorf("host_key", "required (the file is created on first start if missing)")
	}
	switch {
	case cfg.HostCAKey == "":
		c.errorf("host_ca_key", "required (the file is created on first start if missing)")
	case cfg.HostCAKey == cfg.HostKey:
		c.errorf("host_ca_key", "must be a different file from host_key")
	}
	for _, k := range []struct{ key, value string }{{"host_key", cfg.HostKey}, {"host_ca_key", cfg.HostCAKey}} {
		if IsAWSKeyRef(k.value) && (k.value == KeyRefSSM || k.value == KeyRefSecretsManager) {
			c.errorf(k.key, "%q names no parameter or secret, as in ssm:/bastion/host_ed25519", k.value)
		}
	}
	c.checkHostKeyFiles(cfg)
	c.checkTrustedCAs(cfg)
	c.checkUsers(cfg)
	if ls := cfg.Providers.Lightsail; ls != nil {
		c.checkAWS("providers.lightsail", ls.Regions, ls.Address, ls.Port, ls.ResolveCache)
		c.checkRDP(ls)
	}
	if e := cfg.Providers.EC2; e != nil {
		c.checkEC2(e)
	}
	c.checkSerialConsole(cfg)
	c.checkStatic(cfg.Providers.Static)
	c.checkFleet(cfg.Fleet)
	c.checkSSO(cfg)
	c.checkPolicies(cfg)
	c.checkSessionControl(cfg)
	c.checkLimits(&cfg.Limits)
	c.checkRevoked(cfg)
	for i, name := range cfg.Ciphers {
		if !slices.Contains(ssh.SupportedAlgorithms().Ciphers, name) {
			c.errorf(indexKey("ciphers", i), "%q is not a supported cipher (%s)", name, strings.Join(ssh.SupportedAlgorithms().Ciphers, ", "))
		}
	}
	c.checkProxyProtocol(cfg.ProxyProtocol)
	c.lint(cfg)
	if s3 := cfg.Audit.S3; s3 != nil {
		if s3.Bucket == "" {
			c.errorf("audit.s3.bucket", "required")
		}
		if cfg.Audit.Recordings == "" {
			c.errorf("audit.s3", "needs audit.recordings: recordings are kept there until uploaded")
		}
		if s3.Region != "" && !regionRe.MatchString(s3.Region) {
			c.errorf("audit.s3.region", "%q is not an AWS region name, such as us-east-1", s3.Region)
		}
		// The recorder writes to its file every second
		// (recording.DefaultFlushInterval): a shorter interval would
		// find nothing new.
		if d := s3.FlushInterval; d.D() < time.Second {
			c.errorf("audit.s3.flush_interval", "%s is too short; use at least 1s", d)
		}
	}
	if (cfg.Audit.RecordInput || cfg.Audit.RecordExec) && cfg.Audit.Recordings == "" {
		c.errorf("audit.recordings", "required when record_input or record_exec is set")
	}
	if o := cfg.Audit.OnFailure; o != OnFailureRefuse && o != OnFailureContinue {
		c.errorf("audit.on_failure", "%q is neither %q nor %q", o, OnFailureRefuse, OnFailureContinue)
	}
	c.checkSigningKeyFile(cfg.Audit.SigningKey)
	c.checkCloudWatch(cfg.Audit.CloudWatch)
	if d := cfg.Audit.CheckpointInterval; d.D() < time.Second {
		c.errorf("audit.checkpoint_interval", "%s is too short; use at least 1s", d)
	}
	if m := cfg.Audit.MaxRecordingSize; m > 0 && m < 4<<10 {
		c.errorf("audit.max_recording_size", "%s is too small for a recording's header; use at least 4KiB (or 0 for no cap)", m)
	}
	c.checkRecordingsRecipients(&cfg.Audit)
}

// checkSigningKeyFile checks audit.signing_key when the file exists (a
// missing one is created at start): an ed25519 private key only the
// bastion's user can read, as serve demands.
func (c *checker) checkSigningKeyFile(file string) {
	if file == "" || c.skipFiles {
		return
	}
	data, err := secfile.ReadPrivateKey(file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		c.errorf("audit.signing_key", "%s", fileMessage(file, err))
		return
	}
	signer, err := ssh.ParsePrivateKey(data)
	clear(data)
	switch {
	case err != nil:
		c.errorf("audit.signing_key", "%s is not an unencrypted SSH private key (%v)", file, err)
	case signer.PublicKey().Type() != ssh.KeyAlgoED25519:
		c.errorf("audit.signing_key", "%s is a %s key; the audit log is signed with ed25519", file, signer.PublicKey().Type())
	}
}

// checkHostKeyFiles checks the host_key and host_ca_key files that exist
// (a missing one is created at start): each must be a private key only the
// bastion's user can read, a symlink must lead to a file, and the CA must
// be another key than the host key, whatever paths name them (a symlink, a
// hard link or a copy). The keys are parsed and dropped; only their
// fingerprints are compared.
func (c *checker) checkHostKeyFiles(cfg *Config) {
	var fps [2]string
	for i, k := range []struct{ key, file string }{{"host_key", cfg.HostKey}, {"host_ca_key", cfg.HostCAKey}} {
		if k.file == "" || IsAWSKeyRef(k.file) {
			continue
		}
		data, err := secfile.ReadPrivateKey(k.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			c.errorf(k.key, "%s", fileMessage(k.file, err))
			continue
		}
		signer, err := ssh.ParsePrivateKey(data)
		clear(data)
		if err != nil {
			c.errorf(k.key, "%s is not an unencrypted SSH private key (%v)", k.file, err)
			continue
		}
		fps[i] = ssh.FingerprintSHA256(signer.PublicKey())
	}
	if fps[0] != "" && fps[0] == fps[1] && cfg.HostCAKey != cfg.HostKey {
		c.errorf("host_ca_key", "%s holds the same key as host_key (%s, %s): the host CA must be a key of its own", cfg.HostCAKey, cfg.HostKey, fps[1])
	}
}

// checkRevoked parses the revoked keys into fingerprints.
func (c *checker) checkRevoked(cfg *Config) {
	add := func(key, line string) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "SHA256:") && !strings.ContainsAny(line, " \t") {
			cfg.RevokedFingerprints = append(cfg.RevokedFingerprints, line)
			return
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			c.errorf(key, "%q is neither a public key in authorized_keys format nor a SHA256:… fingerprint", line)
			return
		}
		cfg.RevokedFingerprints = append(cfg.RevokedFingerprints, ssh.FingerprintSHA256(pk))
	}
	for i, line := range cfg.RevokedKeys {
		add(indexKey("revoked_keys", i), line)
	}
	if cfg.RevokedKeysFile == "" || c.skipFiles {
		return
	}
	data, err := secfile.ReadAccessFile(cfg.RevokedKeysFile)
	if err != nil {
		c.errorf("revoked_keys_file", "%s", fileMessage(cfg.RevokedKeysFile, err))
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			add("revoked_keys_file", line)
		}
	}
}

func (c *checker) checkProxyProtocol(pp *ProxyProtocol) {
	if pp == nil {
		return
	}
	if len(pp.TrustedCIDRs) == 0 {
		c.errorf("proxy_protocol.trusted_cidrs", "required: list the load balancers' networks, such as 10.0.0.0/16")
	}
	for i, s := range pp.TrustedCIDRs {
		if _, _, err := net.ParseCIDR(s); err != nil {
			c.errorf(indexKey("proxy_protocol.trusted_cidrs", i), "%q is not a CIDR block such as 10.0.0.0/16", s)
		}
	}
}

// checkListen checks a listen address: host:port, where the host may be
// empty (all interfaces) and the port 0 (any free port).
func (c *checker) checkListen(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !validPort(port, 0) || strings.ContainsAny(host, " /") {
		c.errorf(key, "%q is not host:port, such as \":2222\" or \"127.0.0.1:9090\"", addr)
	}
}

// validPort reports whether port is a decimal number from min to 65535.
func validPort(port string, min uint64) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n >= min
}

func (c *checker) checkTrustedCAs(cfg *Config) {
	for i, line := range cfg.TrustedUserCAKeys {
		pk, err := parsePublicKey(line, "cert-authority")
		if err != nil {
			c.errorf(indexKey("trusted_user_ca_keys", i), "%s", keyMessage(err, "list the public key of the CA that signs user certificates"))
			continue
		}
		cfg.TrustedUserCAs = append(cfg.TrustedUserCAs, pk)
	}
}

func (c *checker) checkUsers(cfg *Config) {
	first := make(map[string]string) // user name → key path of its first entry
	for i := range cfg.Users {
		u := &cfg.Users[i]
		key := indexKey("users", i)
		nameKey := key + ".name"
		switch {
		case u.Name == "":
			c.errorf(nameKey, "required")
		case !userNameRe.MatchString(u.Name):
			c.errorf(nameKey, "%q is not a valid user name (lower-case letters, digits, '.', '_' and '-', not starting with a digit, '.' or '-')", u.Name)
		case first[u.Name] != "":
			c.errorf(nameKey, "duplicate user %q (first at line %d)", u.Name, c.lineOf(first[u.Name]))
		default:
			first[u.Name] = nameKey
		}
		bad := false
		for j, line := range u.Keys {
			pk, ko, err := parseUserKey(line)
			if err != nil {
				c.errorf(indexKey(key+".keys", j), "%s", keyMessage(err, userCertHint))
				bad = true
				continue
			}
			if !c.addUserKey(u, pk, ko, indexKey(key+".keys", j)) {
				bad = true
			}
		}
		if u.KeysFile != "" && !c.readKeysFile(u, key+".keys_file") {
			bad = true
		}
		for j, g := range u.Groups {
			if g == "" {
				c.errorf(indexKey(key+".groups", j), "must not be empty")
			}
		}
		if len(u.PublicKeys) == 0 && len(cfg.TrustedUserCAKeys) == 0 && !bad && !(c.skipFiles && u.KeysFile != "") {
			c.errorf(key, "has no keys: set keys or keys_file (or trusted_user_ca_keys to log in with certificates)")
		}
	}
}

const userCertHint = "to accept certificates, list their signer in trusted_user_ca_keys"

// readKeysFile appends the keys in u's authorized_keys file to u.PublicKeys
// and reports whether the file was read and every key in it parsed.
func (c *checker) readKeysFile(u *User, key string) bool {
	if c.skipFiles {
		return true
	}
	data, err := secfile.ReadAccessFile(u.KeysFile)
	if err != nil {
		c.errorf(key, "%s", fileMessage(u.KeysFile, err))
		return false
	}
	ok := true
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		pk, ko, err := parseUserKey(line)
		if err != nil {
			c.errorf(key, "%s line %d: %s", u.KeysFile, n+1, keyMessage(err, userCertHint))
			ok = false
			continue
		}
		if !c.addUserKey(u, pk, ko, key) {
			ok = false
		}
	}
	return ok
}

// addUserKey appends pk, with its options, to u's keys and reports whether
// it did. It refuses a key already listed for another user: identity comes
// from the key, so a key must name one person.
func (c *checker) addUserKey(u *User, pk ssh.PublicKey, ko KeyOptions, key string) bool {
	wire := string(pk.Marshal())
	if owner, ok := c.keyOwners[wire]; ok && owner != u.Name {
		c.errorf(key, "key %s is also listed for user %q; a key must belong to one user", ssh.FingerprintSHA256(pk), owner)
		return false
	}
	c.keyOwners[wire] = u.Name
	u.PublicKeys = append(u.PublicKeys, pk)
	u.KeyOptions = append(u.KeyOptions, ko)
	return true
}

// checkAWS checks the keys common to the AWS providers.
func (c *checker) checkAWS(key string, regions []string, address string, port int, cache Duration) {
	if len(regions) == 0 {
		c.errorf(key+".regions", "required: list at least one region, such as us-east-1")
	}
	seen := make(map[string]bool)
	for i, r := range regions {
		switch rkey := indexKey(key+".regions", i); {
		case !regionRe.MatchString(r):
			c.errorf(rkey, "%q is not an AWS region name, such as us-east-1", r)
		case seen[r]:
			c.errorf(rkey, "duplicate region %q", r)
		}
		seen[r] = true
	}
	if address != AddressPublic && address != AddressPrivate {
		c.errorf(key+".address", "%q is not %q or %q", address, AddressPublic, AddressPrivate)
	}
	if port < 1 || port > 65535 {
		c.errorf(key+".port", "%d is not a port number (1-65535)", port)
	}
	if cache < 0 {
		c.errorf(key+".resolve_cache", "must not be negative")
	}
}

func (c *checker) checkEC2(e *EC2) {
	const key = "providers.ec2"
	c.checkAWS(key, e.Regions, e.Address, e.Port, e.ResolveCache)
	pinned := e.HostKeys == HostKeysPinned
	switch e.HostKeys {
	case HostKeysTOFU, HostKeysPinned, HostKeysConsole:
	default:
		c.errorf(key+".host_keys", "%q is not %q, %q or %q", e.HostKeys, HostKeysTOFU, HostKeysPinned, HostKeysConsole)
	}
	switch {
	case e.HostKeysFallback != "" && e.HostKeysFallback != "refuse" && e.HostKeysFallback != "tofu":
		c.errorf(key+".host_keys_fallback", "%q is not \"refuse\" or \"tofu\"", e.HostKeysFallback)
	case e.HostKeysFallback == "tofu" && e.HostKeys != HostKeysConsole:
		c.warnf(key+".host_keys_fallback", "has no effect: it applies to host_keys: %s only", HostKeysConsole)
	}
	if e.KnownHosts == "" {
		c.errorf(key+".known_hosts", "required: the file of instances' host keys (written on first use with tofu, only read with pinned)")
		return
	}
	// The TOFU store is created on first use; if it exists, it must parse.
	if _, err := os.Stat(e.KnownHosts); pinned || err == nil {
		c.checkKnownHosts(key+".known_hosts", e.KnownHosts)
	}
}

func (c *checker) checkStatic(targets []Static) {
	first := make(map[string]string) // target name → key path of its first entry
	for i := range targets {
		s := &targets[i]
		key := indexKey("providers.static", i)
		nameKey := key + ".name"
		switch {
		case s.Name == "":
			c.errorf(nameKey, "required")
		case !targetNameRe.MatchString(s.Name):
			c.errorf(nameKey, "%q is not a valid target name (letters, digits, '.', '_' and '-', starting with a letter or digit)", s.Name)
		case hasTargetSuffix(s.Name):
			c.errorf(nameKey, "%q must not end in %s (they select a provider)", s.Name, provider.Or(provider.Suffixes()))
		case first[s.Name] != "":
			c.errorf(nameKey, "duplicate static target %q (first at line %d)", s.Name, c.lineOf(first[s.Name]))
		default:
			first[s.Name] = nameKey
		}
		if s.Address == "" {
			c.errorf(key+".address", "required")
		} else if host, port, err := net.SplitHostPort(s.Address); err != nil || host == "" || !validPort(port, 1) {
			c.errorf(key+".address", "%q is not host:port, such as \"10.0.0.5:22\"", s.Address)
		}
		if s.User == "" {
			c.errorf(key+".user", "required")
		}
		if s.PrivateKey == "" {
			c.errorf(key+".private_key", "required")
		} else {
			c.checkPrivateKey(key+".private_key", s.PrivateKey)
		}
		switch {
		case s.HostKey != "" && s.KnownHosts != "":
			c.errorf(key, "set host_key or known_hosts, not both")
		case s.HostKey != "":
			if _, err := parsePublicKey(s.HostKey); err != nil {
				c.errorf(key+".host_key", "%s", keyMessage(err, "pin the host's public key"))
			}
		case s.KnownHosts != "":
			c.checkKnownHosts(key+".known_hosts", s.KnownHosts)
		default:
			c.errorf(key, "set host_key or known_hosts: the host's key is always verified")
		}
		for tag := range s.Tags {
			if tag == "" {
				c.errorf(key+".tags", "tag names must not be empty")
			}
		}
	}
}

// hasTargetSuffix reports whether name ends in a provider suffix.
func hasTargetSuffix(name string) bool {
	for _, s := range provider.Suffixes() {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// checkPrivateKey checks that file holds an unencrypted SSH private key. The
// key is parsed and dropped: Config never holds private keys.
//
// A file others could read is refused as sshd refuses it, unless it holds
// no private key at all (a .pub file named by mistake): then that is the
// problem to report.
func (c *checker) checkPrivateKey(key, file string) {
	if c.skipFiles {
		return
	}
	c.checkKeyFile(key, file, "an SSH private key", func(raw any) bool {
		_, err := ssh.NewSignerFromKey(raw)
		return err == nil
	})
}

// checkKeyFile checks that file holds an unencrypted private key of the
// kind want accepts (what names it in the error), that others cannot read.
func (c *checker) checkKeyFile(key, file, what string, want func(raw any) bool) {
	data, err := secfile.ReadPrivateKey(file)
	var loose *secfile.ModeError
	if errors.As(err, &loose) {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		c.errorf(key, "%s", fileMessage(file, err))
		return
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	clear(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		c.errorf(key, "%s is encrypted with a passphrase; the bastion needs a key without one", file)
	case err != nil:
		c.errorf(key, "%s is not %s (%v)", file, what, err)
	case loose != nil:
		c.errorf(key, "%s", loose)
	case !want(raw):
		c.errorf(key, "%s is not %s", file, what)
	}
}

// checkKnownHosts checks that file exists and is in known_hosts format.
func (c *checker) checkKnownHosts(key, file string) {
	if c.skipFiles {
		return
	}
	if _, err := knownhosts.New(file); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			c.errorf(key, "%s", fileMessage(file, err))
			return
		}
		c.errorf(key, "%s", strings.TrimPrefix(err.Error(), "knownhosts: "))
	}
}

func (c *checker) checkPolicies(cfg *Config) {
	for i, p := range cfg.Policies {
		key := indexKey("policies", i)
		if len(p.Users) == 0 && len(p.Groups) == 0 {
			c.errorf(key, "set users or groups: a policy must say whom it applies to")
		}
		for j, name := range p.Users {
			// If users failed to decode, every name would be unknown.
			if name != "*" && !c.bad["users"] && cfg.UserByName(name) == nil {
				c.errorf(indexKey(key+".users", j), "unknown user %q (not in users)", name)
			}
		}
		for j, g := range p.Groups {
			if g == "" {
				c.errorf(indexKey(key+".groups", j), "must not be empty")
			}
		}
		c.checkPatterns(key+".targets", p.Targets, `["*"] for every target`)
		c.checkPatterns(key+".os_users", p.OSUsers, `["*"] for any`)
		c.checkCapabilities(key+".allow", p.Allow)
		c.checkCapabilities(key+".deny", p.Deny)
		c.checkExecLoophole(key, p)
		for j, r := range p.Record {
			if r != RecordPTY && r != RecordExec {
				c.errorf(indexKey(key+".record", j), "%q is neither %q nor %q", r, RecordPTY, RecordExec)
			}
		}
		if len(p.Record) > 0 && cfg.Audit.Recordings == "" {
			c.errorf(key+".record", "needs audit.recordings: recordings are written there")
		}
		for j, f := range p.ForwardTo {
			if !validForwardPattern(f) {
				c.errorf(indexKey(key+".forward_to", j), "%q is not a host:port pattern, such as \"127.0.0.1:*\" or \"*.internal:443\"", f)
			}
		}
	}
}

// checkExecLoophole warns about a policy that denies shell or sftp but not
// exec: a command can start a shell (`ssh host sh -i`) or an SFTP server
// (`sftp -s /usr/lib/openssh/sftp-server`), so such a denial stops only the
// plain request, not a person who wants around it.
func (c *checker) checkExecLoophole(key string, p Policy) {
	if slices.Contains(p.Deny, CapExec) {
		return
	}
	var denied []string
	for _, cp := range []string{CapShell, CapSFTP} {
		if slices.Contains(p.Deny, cp) {
			denied = append(denied, cp)
		}
	}
	if len(denied) == 0 {
		return
	}
	c.warnf(key+".deny", "denies %s but not exec, and an exec can start a shell or an SFTP server; add exec to deny for the denial to hold", strings.Join(denied, " and "))
}

// checkPatterns checks a required list of glob patterns.
func (c *checker) checkPatterns(key string, patterns []string, hint string) {
	if len(patterns) == 0 {
		c.errorf(key, "required (use %s)", hint)
	}
	for i, p := range patterns {
		if p == "" {
			c.errorf(indexKey(key, i), "must not be empty")
		} else if !validGlob(p) {
			c.errorf(indexKey(key, i), "%q is not a valid pattern", p)
		}
	}
}

func (c *checker) checkCapabilities(key string, caps []string) {
	for i, cp := range caps {
		if !slices.Contains(capabilities, cp) {
			c.errorf(indexKey(key, i), "unknown capability %q (want one of %s)", cp, strings.Join(capabilities, ", "))
		}
	}
}

// validGlob reports whether p is a well-formed path.Match pattern.
func validGlob(p string) bool {
	_, err := path.Match(p, "")
	return err == nil
}

// validForwardPattern reports whether p is a host:port pattern for
// forward_to: a glob for the host and "*" or a port number for the port.
func validForwardPattern(p string) bool {
	host, port, err := net.SplitHostPort(p)
	if err != nil || host == "" || !validGlob(host) {
		return false
	}
	return port == "*" || validPort(port, 1)
}

func (c *checker) checkLimits(l *Limits) {
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.max_session", l.MaxSession},
		{"limits.handshake_timeout", l.HandshakeTimeout},
		{"limits.dial_timeout", l.DialTimeout},
		{"limits.aws_timeout", l.AWSTimeout},
		{"limits.drain_timeout", l.DrainTimeout},
	} {
		if d.v < 0 {
			c.errorf(d.key, "must not be negative")
		}
	}
	if l.MaxAuthTries < 1 {
		c.errorf("limits.max_auth_tries", "must be at least 1")
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"limits.max_links", l.MaxLinks},
		{"limits.max_links_per_user", l.MaxLinksPerUser},
		{"limits.max_links_per_connection", l.MaxLinksPerConnection},
		{"limits.max_unauthenticated", l.MaxUnauthenticated},
		{"limits.failed_auth_per_minute", l.FailedAuthPerMinute},
	} {
		if n.v < 0 {
			c.errorf(n.key, "must not be negative (0 means no limit)")
		}
	}
}

var (
	errNotKey      = errors.New("not a public key in authorized_keys format")
	errCertificate = errors.New("a certificate, not a public key")
)

// parsePublicKey parses one public key in authorized_keys format, such as
// "ssh-ed25519 AAAA… alice@laptop". Key options other than those in allowed
// are refused (the bastion would not honour them), as are certificates and
// more than one key.
func parsePublicKey(line string, allowed ...string) (ssh.PublicKey, error) {
	pk, opts, err := parseKeyLine(line)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		if !slices.Contains(allowed, o) {
			return nil, fmt.Errorf("key option %s is not supported", clipOption(o))
		}
	}
	return pk, nil
}

// parseUserKey parses a user's key line in authorized_keys format with its
// options (ParseKeyOptions), refusing those the bastion cannot honour.
func parseUserKey(line string) (ssh.PublicKey, KeyOptions, error) {
	pk, opts, err := parseKeyLine(line)
	if err != nil {
		return nil, KeyOptions{}, err
	}
	ko, err := ParseKeyOptions(opts)
	if err != nil {
		return nil, KeyOptions{}, err
	}
	return pk, ko, nil
}

// parseKeyLine parses one key in authorized_keys format and returns its
// options, refusing certificates and more than one key.
func parseKeyLine(line string) (ssh.PublicKey, []string, error) {
	pk, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, nil, errNotKey
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, errors.New("more than one key; give one key per entry")
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return nil, nil, errCertificate
	}
	return pk, opts, nil
}

// keyMessage returns the message for a parsePublicKey error, adding hint to
// the one for a certificate.
func keyMessage(err error, hint string) string {
	if errors.Is(err, errCertificate) {
		return err.Error() + "; " + hint
	}
	return err.Error()
}

// fileMessage returns the message for failing to read file.
func fileMessage(file string, err error) string {
	var me *secfile.ModeError
	var de *secfile.DanglingSymlinkError
	if errors.As(err, &me) || errors.As(err, &de) {
		return err.Error()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return file + " does not exist"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("reading %s: %v", file, err)
}

// dynamoDBTableName is what DynamoDB accepts as a table name.
var dynamoDBTableName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)

func (c *checker) checkFleet(f *Fleet) {
	if f == nil {
		return
	}
	if !dynamoDBTableName.MatchString(f.DynamoDBTable) {
		c.errorf("fleet.dynamodb_table", "%q is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _ . -)", f.DynamoDBTable)
	}
	if len(f.Replica) > 128 || strings.ContainsFunc(f.Replica, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		c.errorf("fleet.replica", "must be at most 128 bytes without blanks or control characters")
	}
	if f.Advertise != "" {
		if _, _, err := net.SplitHostPort(f.Advertise); err != nil {
			c.errorf("fleet.advertise", "%q is not host:port", f.Advertise)
		}
	}
}

// checkSessionControl validates session_control: its groups must be named.
func (c *checker) checkSessionControl(cfg *Config) {
	for i, g := range cfg.SessionControl.Groups {
		if g == "" {
			c.errorf(indexKey("session_control.groups", i), "must not be empty")
		}
	}
}
