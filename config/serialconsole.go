package config

import (
	"encoding/base64"
	"net"
	"slices"
	"strings"
)

// SerialConsole is providers.ec2.serial_console: where the EC2 serial
// console service is reached and which host keys it may present.
type SerialConsole struct {
	// Endpoint is the host:port of the serial console service, with
	// "{region}" standing for the instance's region. Empty means AWS's
	// published endpoint of each region
	// (serial-console.ec2-instance-connect.{region}.aws:22 in most).
	Endpoint string `yaml:"endpoint"`
	// HostKeys maps a region to the SHA256 fingerprints
	// ("SHA256:dXwn5ma/…") its endpoint may present. A region listed here
	// uses these alone; the others use the fingerprints AWS publishes.
	HostKeys map[string][]string `yaml:"host_keys"`
}

// RegionPlaceholder is the part of SerialConsole.Endpoint replaced by the
// instance's region.
const RegionPlaceholder = "{region}"

// IsSHA256Fingerprint reports whether s is an OpenSSH SHA256 fingerprint
// as ssh.FingerprintSHA256 prints it: "SHA256:" and the unpadded base64 of
// 32 bytes.
func IsSHA256Fingerprint(s string) bool {
	b64, ok := strings.CutPrefix(s, "SHA256:")
	if !ok || len(b64) != 43 {
		return false
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	return err == nil && len(b) == 32
}

// checkSerialConsole checks providers.ec2.serial_console, and warns when a
// policy grants serial_console on a bastion that records nothing: serial
// console sessions are always recorded, so those logins are refused.
func (c *checker) checkSerialConsole(cfg *Config) {
	if e := cfg.Providers.EC2; e != nil && e.SerialConsole != nil {
		const key = "providers.ec2.serial_console"
		sc := e.SerialConsole
		if sc.Endpoint != "" {
			host, port, err := net.SplitHostPort(strings.ReplaceAll(sc.Endpoint, RegionPlaceholder, "us-east-1"))
			if err != nil || host == "" || port == "" {
				c.errorf(key+".endpoint", "%q is not host:port (with %s for the region)", sc.Endpoint, RegionPlaceholder)
			}
		}
		for _, region := range sortedKeys(sc.HostKeys) {
			k := key + ".host_keys." + region
			if !regionRe.MatchString(region) {
				c.errorf(k, "%q is not an AWS region name, such as us-east-1", region)
			}
			fps := sc.HostKeys[region]
			if len(fps) == 0 {
				c.errorf(k, "lists no fingerprint: the endpoint of %s could never be trusted", region)
			}
			for i, fp := range fps {
				if !IsSHA256Fingerprint(fp) {
					c.errorf(indexKey(k, i), "%q is not a SHA256 fingerprint (SHA256: and 43 base64 characters, as ssh-keygen -l prints it)", fp)
				}
			}
		}
	}
	if cfg.Audit.Recordings != "" || cfg.Providers.EC2 == nil {
		return
	}
	for i, p := range cfg.Policies {
		if slices.Contains(p.Allow, CapSerialConsole) {
			c.warnf(indexKey("policies", i)+".allow", "grants %s, but audit.recordings is not set: serial console sessions are always recorded, so they are refused", CapSerialConsole)
		}
	}
}

// sortedKeys returns the keys of m in order, for problems in a stable order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
