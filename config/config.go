// Package config defines bastion's configuration file (config.yaml), its
// defaults and its validation. Load and Parse return a Config that is ready to
// use: durations parsed, relative paths resolved against the file's folder,
// public keys parsed, every problem reported with the key and line.
package config

import (
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/upstream/provider"
)

// Defaults for keys left out of the file.
const (
	DefaultListen           = ":2222"
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultAWSTimeout       = 10 * time.Second
	DefaultMaxAuthTries     = 6
	DefaultResolveCache     = provider.DefaultResolveCache
	DefaultDrainTimeout     = 30 * time.Second
	// DefaultMaxUnauthenticated bounds connections still in their
	// handshake or authentication.
	DefaultMaxUnauthenticated = 256
	// DefaultFailedAuthPerMinute is how many failed authentications one
	// address may have in a minute before its next attempts are slowed.
	DefaultFailedAuthPerMinute = 10
	// DefaultMaxLinksPerConnection bounds the links one connection
	// carries at once, as OpenSSH's MaxSessions (10) bounds its sessions.
	DefaultMaxLinksPerConnection = 10
	// DefaultMaxRecordingSize caps one session recording.
	DefaultMaxRecordingSize = 1 << 30
	// DefaultMinFreeSpace is the free space below which new links are
	// refused on the disks of the audit log and the recordings.
	DefaultMinFreeSpace = 64 << 20
	// DefaultCheckpointInterval is how long an audit event may wait for
	// the signed checkpoint that covers it.
	DefaultCheckpointInterval = time.Minute
	// DefaultS3FlushInterval is how often a live recording's new bytes
	// go to S3.
	DefaultS3FlushInterval = 30 * time.Second
)

// Values of audit.on_failure.
const (
	// OnFailureRefuse refuses or ends a link whose audit events or
	// recording cannot be written (the default).
	OnFailureRefuse = "refuse"
	// OnFailureContinue lets it go on unaudited or unrecorded, logging
	// and counting each failure.
	OnFailureContinue = "continue"
)

// Capability names used in policies' allow and deny lists.
const (
	CapShell           = "shell"
	CapExec            = "exec"
	CapSFTP            = "sftp"
	CapSCP             = "scp"
	CapPortForwarding  = "port_forwarding"
	CapAgentForwarding = "agent_forwarding"
	CapX11             = "x11"
	// CapSerialConsole lets a person reach EC2 serial consoles
	// ("port0@web-1.serial"); no policy grants it unless it says so.
	CapSerialConsole = provider.CapSerialConsole
)

// SessionControl is the session_control section.
type SessionControl struct {
	// Groups are the user groups whose members see and end every live
	// session; everyone else sees and ends only their own.
	Groups []string `yaml:"groups"`
}

// Config is the whole configuration file.
type Config struct {
	// Path is the file the config was loaded from ("" when parsed from bytes).
	Path string `yaml:"-"`

	Listen            string    `yaml:"listen"`
	HostKey           string    `yaml:"host_key"`
	HostCAKey         string    `yaml:"host_ca_key"`
	AdminListen       string    `yaml:"admin_listen"`
	Users             []User    `yaml:"users"`
	TrustedUserCAKeys []string  `yaml:"trusted_user_ca_keys"`
	Providers         Providers `yaml:"providers"`
	Policies          []Policy  `yaml:"policies"`
	Audit             Audit     `yaml:"audit"`
	Limits            Limits    `yaml:"limits"`
	// RevokedKeys are keys (authorized_keys format) or SHA256 fingerprints
	// refused even if a user lists them or a trusted CA signed them; for a
	// certificate, its key, the certificate itself and its signing CA are
	// checked.
	RevokedKeys []string `yaml:"revoked_keys"`
	// RevokedKeysFile holds more revoked keys, one per line.
	RevokedKeysFile string `yaml:"revoked_keys_file"`
	// RevokeLiveSessions, when a reload removes a user or revokes their
	// key, closes that person's live connections too (with a message).
	RevokeLiveSessions bool `yaml:"revoke_live_sessions"`
	// SessionControl names who may list, end and watch other people's
	// live sessions (`ssh bastion sessions`, `kill`, `watch`).
	SessionControl SessionControl `yaml:"session_control"`
	// WatchConfig reloads the file when it changes, as SIGHUP does (but
	// without reopening the audit log).
	WatchConfig bool `yaml:"watch_config"`
	// Ciphers are the SSH ciphers offered to people; empty means the
	// default, chosen per client from its version line
	// (proxy.DefaultServerCiphers).
	Ciphers []string `yaml:"ciphers"`
	// ProxyProtocol accepts PROXY protocol headers from load balancers.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`
	// Fleet, if set, keeps the state the replicas share in one DynamoDB
	// table (EC2 host keys learned on first use, so far).
	Fleet *Fleet `yaml:"fleet"`
	// SSO, if set, lets people whose keys no user lists log in through
	// an OpenID provider (sso.go).
	SSO *SSO `yaml:"sso"`

	// TrustedUserCAs holds TrustedUserCAKeys parsed.
	TrustedUserCAs []ssh.PublicKey `yaml:"-"`
	// RevokedFingerprints holds the SHA256 fingerprints of RevokedKeys
	// and RevokedKeysFile.
	RevokedFingerprints []string `yaml:"-"`
	// Warnings are what Parse found doubtful but valid (such as a policy
	// whose denials exec can get around), sorted by line; check-config
	// prints them and serve logs them.
	Warnings []*Error `yaml:"-"`
}

// ProxyProtocol configures PROXY protocol (v1 and v2) on the listener.
type ProxyProtocol struct {
	// TrustedCIDRs are the load balancers' networks. A connection from
	// one of them may carry a PROXY header, whose source address is then
	// the person's; from anywhere else a header is refused.
	TrustedCIDRs []string `yaml:"trusted_cidrs"`
	// Required refuses connections from trusted networks that do not
	// send a header.
	Required bool `yaml:"required"`
}

// User is one person who may log in to the bastion.
type User struct {
	Name     string   `yaml:"name"`
	Keys     []string `yaml:"keys"`
	KeysFile string   `yaml:"keys_file"`
	Groups   []string `yaml:"groups"`

	// PublicKeys holds Keys and the keys of KeysFile, parsed.
	PublicKeys []ssh.PublicKey `yaml:"-"`
	// KeyOptions holds the authorized_keys options of each key line:
	// KeyOptions[i] are those of PublicKeys[i].
	KeyOptions []KeyOptions `yaml:"-"`
}

// Fleet configures the shared state of a bastion's replicas.
type Fleet struct {
	// DynamoDBTable is the table's name; `bastion fleet init` creates it.
	DynamoDBTable string `yaml:"dynamodb_table"`
	// Replica names this replica in what it writes; default the host name.
	Replica string `yaml:"replica"`
	// Advertise is the host:port other replicas would reach this one on
	// for a cross-replica watch, which is not built yet: it is validated
	// and warned about, and nothing listens on it.
	Advertise string `yaml:"advertise"`
}

// Providers configures where targets come from.
type Providers struct {
	Lightsail *Lightsail `yaml:"lightsail"`
	EC2       *EC2       `yaml:"ec2"`
	Static    []Static   `yaml:"static"`
	// Sections holds the sections of registered provider kinds that bring
	// their own section type (provider.Descriptor.NewSection), by kind
	// name: what NewSection returned, decoded and validated.
	Sections map[string]any `yaml:"-"`
}

// Address choices for AWS providers.
const (
	AddressPublic  = provider.AddressPublic
	AddressPrivate = provider.AddressPrivate
)

// Host key policies for EC2.
const (
	HostKeysTOFU    = "tofu"
	HostKeysPinned  = "pinned"
	HostKeysConsole = "console"
)

// Lightsail configures the Lightsail provider.
type Lightsail struct {
	Regions []string `yaml:"regions"`
	// Address is AddressPublic (default) or AddressPrivate.
	Address string `yaml:"address"`
	// Port is the instances' SSH port; default 22.
	Port int `yaml:"port"`
	// ResolveCache is how long name lookups are cached; default 30s.
	ResolveCache Duration `yaml:"resolve_cache"`
	// RDPPort is the Windows instances' Remote Desktop port, which an
	// rdp forward reaches; default DefaultRDPPort (3389).
	RDPPort int `yaml:"rdp_port"`
	// RDPKeyPairs maps a Lightsail key pair name to the file of its RSA
	// private key, which decrypts the Windows password of instances
	// created with that key pair (passwordData).
	RDPKeyPairs map[string]string `yaml:"rdp_key_pairs"`
}

// EC2 configures the EC2 Instance Connect provider.
type EC2 struct {
	Regions []string `yaml:"regions"`
	// Address is AddressPrivate (default) or AddressPublic.
	Address string `yaml:"address"`
	// Port is the instances' SSH port; default 22.
	Port int `yaml:"port"`
	// HostKeys is HostKeysTOFU (default), HostKeysPinned or
	// HostKeysConsole (each instance's keys read from the block cloud-init
	// prints on its console, pinned before the first connection).
	HostKeys string `yaml:"host_keys"`
	// HostKeysFallback is what host_keys: console does for an instance
	// whose console shows no host key block (no cloud-init, output
	// truncated): "refuse" (default) or "tofu" (trust its first key, in
	// known_hosts).
	HostKeysFallback string `yaml:"host_keys_fallback"`
	// KnownHosts is the known_hosts file: the TOFU store (written) or the
	// pinned list (read only), keyed by instance id.
	KnownHosts string `yaml:"known_hosts"`
	// ResolveCache is how long name lookups are cached; default 30s.
	ResolveCache Duration `yaml:"resolve_cache"`
	// SerialConsole configures the EC2 serial console of these instances
	// ("web-1.serial"); nil means AWS's endpoints and host keys.
	SerialConsole *SerialConsole `yaml:"serial_console"`
}

// Static is one non-AWS host with a fixed address and key.
type Static struct {
	Name       string `yaml:"name"`
	Address    string `yaml:"address"`
	User       string `yaml:"user"`
	PrivateKey string `yaml:"private_key"`
	// HostKey pins the host's public key (authorized_keys format).
	HostKey string `yaml:"host_key"`
	// KnownHosts is a known_hosts file to verify the host key against,
	// instead of HostKey.
	KnownHosts string `yaml:"known_hosts"`
	// Tags are free-form labels that policies can match.
	Tags map[string]string `yaml:"tags"`
}

// Policy grants users or groups access to targets as OS users.
type Policy struct {
	Users   []string `yaml:"users"`
	Groups  []string `yaml:"groups"`
	Targets []string `yaml:"targets"`
	OSUsers []string `yaml:"os_users"`
	// Allow adds capabilities beyond the default session ones (shell, exec,
	// sftp, scp): port_forwarding, agent_forwarding, x11.
	Allow []string `yaml:"allow"`
	// Deny removes capabilities this policy would grant.
	Deny []string `yaml:"deny"`
	// ForwardTo limits port_forwarding to these host:port patterns.
	ForwardTo []string `yaml:"forward_to"`
	// Record names the sessions recorded on the targets this policy
	// matches, whoever opens them and whichever policy let them in:
	// RecordPTY (as every pty session is) and RecordExec (exec sessions
	// without a pty, as audit.record_exec does everywhere).
	Record []string `yaml:"record"`
}

// Values of a policy's record list.
const (
	RecordPTY  = "pty"
	RecordExec = "exec"
)

// Audit configures the audit trail.
type Audit struct {
	// Log is a file path or "stdout"; empty means stdout.
	Log string `yaml:"log"`
	// Recordings is the folder for session recordings (asciicast v2);
	// empty means none. Every session with a pty is recorded.
	Recordings string `yaml:"recordings"`
	// RecordInput records what the person types too (passwords typed at a
	// prompt included). Off by default.
	RecordInput bool `yaml:"record_input"`
	// RecordExec records the output of exec sessions without a pty too.
	RecordExec bool `yaml:"record_exec"`
	// S3 ships finished recordings to a bucket.
	S3 *S3 `yaml:"s3"`
	// CloudWatch, if set, sends the audit events to CloudWatch Logs too.
	CloudWatch *CloudWatch `yaml:"cloudwatch"`
	// OnFailure is what happens to a link whose audit events or recording
	// cannot be written: OnFailureRefuse (default) or OnFailureContinue.
	OnFailure string `yaml:"on_failure"`
	// MaxRecordingSize caps one recording; reaching it ends the recording
	// and, unless OnFailure is continue, the session. Default 1GiB; 0
	// means no cap.
	MaxRecordingSize Size `yaml:"max_recording_size"`
	// MinFreeSpace refuses new links while the disk of the audit log or
	// of the recordings has less free space than this. Default 64MiB; 0
	// disables the check.
	MinFreeSpace Size `yaml:"min_free_space"`
	// SigningKey is the ed25519 key (OpenSSH private key file, created
	// if missing, mode 0600) that signs the audit log's checkpoints;
	// empty means the log is chained but not signed.
	SigningKey string `yaml:"signing_key"`
	// RecordingsRecipients, if set, are age X25519 recipients ("age1…"):
	// recordings are then encrypted to them as they are written (files
	// ending in .cast.age), and no plaintext recording reaches the disk.
	RecordingsRecipients []string `yaml:"recordings_recipients"`
	// CheckpointInterval is how long an event may wait for the signed
	// checkpoint that covers it (also one at most every 1,000 events).
	// Default 1m.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// S3 is where recordings are uploaded. A recording stays in the local
// folder until its upload succeeds.
type S3 struct {
	Bucket string `yaml:"bucket"`
	Prefix string `yaml:"prefix"`
	// Region is the bucket's region; empty means the SDK's default.
	Region string `yaml:"region"`
	// KeepLocal keeps the local file after a successful upload.
	KeepLocal bool `yaml:"keep_local"`
	// FlushInterval is how often a live recording's new bytes are
	// uploaded as a piece, so that a lost replica loses at most this much
	// of it. Default 30s.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Limits bounds connections, links and sessions. A connection is a person's
// outer SSH connection to the bastion; a link is one upstream connection
// spliced to a person (one per ProxyJump channel, one per direct-mode
// connection); a session is an SSH session channel.
type Limits struct {
	// IdleTimeout closes a link with no traffic for this long, and
	// MaxSession (a name older than the word "link") any link this long
	// after it started.
	IdleTimeout      Duration `yaml:"idle_timeout"`
	MaxSession       Duration `yaml:"max_session"`
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	DialTimeout      Duration `yaml:"dial_timeout"`
	AWSTimeout       Duration `yaml:"aws_timeout"`
	MaxAuthTries     int      `yaml:"max_auth_tries"`
	// DrainTimeout is how long SIGTERM lets live sessions go on.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// MaxLinks bounds the links open in total, counting inner logins
	// still in progress and, for a connection that carries no link yet,
	// the connection itself; 0 means no bound.
	MaxLinks int `yaml:"max_links"`
	// MaxLinksPerUser bounds one person's links, counted as MaxLinks
	// counts them; 0 means no bound.
	MaxLinksPerUser int `yaml:"max_links_per_user"`
	// MaxLinksPerConnection bounds the channels one connection has the
	// bastion serve at once (ProxyJump links, their inner logins in
	// progress, and the bastion's own sessions); 0 means no bound.
	MaxLinksPerConnection int `yaml:"max_links_per_connection"`
	// MaxSessions is the deprecated name of MaxLinks; Parse moves its
	// value there, with a warning. A deprecated tag names the key that
	// replaces a key.
	MaxSessions int `yaml:"max_sessions" deprecated:"max_links"`
	// MaxSessionsPerUser is the deprecated name of MaxLinksPerUser.
	MaxSessionsPerUser int `yaml:"max_sessions_per_user" deprecated:"max_links_per_user"`
	// MaxUnauthenticated bounds connections not yet authenticated, and
	// ProxyJump channels whose inner login is not complete. One source
	// address may hold a quarter of them (plus 8), less while its
	// connections keep timing out in the handshake. When all are taken,
	// a newcomer from an address holding fewer than the address holding
	// the most is admitted in place of that address's oldest; otherwise
	// it is closed at once.
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// FailedAuthPerMinute is how many failed authentications one source
	// address may have per minute before its further attempts are delayed,
	// by a time that doubles with each failure (up to 30s); 0 disables.
	FailedAuthPerMinute int `yaml:"failed_auth_per_minute"`
}

// Duration is a time.Duration written as "30s", "10m", "12h" in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UserByName returns the user called name, or nil if there is none.
func (c *Config) UserByName(name string) *User {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	return nil
}

// StaticByName returns the static target called name, or nil if there is
// none.
func (c *Config) StaticByName(name string) *Static {
	for i := range c.Providers.Static {
		if c.Providers.Static[i].Name == name {
			return &c.Providers.Static[i]
		}
	}
	return nil
}
