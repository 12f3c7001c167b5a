package config

import (
	"crypto/rsa"
	"path"
	"regexp"
	"slices"
)

// CapRDP lets a person forward to a Windows Lightsail instance's Remote
// Desktop port (ssh -L 13389:win-1:3389 bastion) and get its RDP
// credentials (ssh bastion rdp win-1). It is not granted by default.
const CapRDP = "rdp"

// DefaultRDPPort is the Remote Desktop port of Windows instances.
const DefaultRDPPort = 3389

func init() { capabilities = append(capabilities, CapRDP) }

// keyPairNameRe matches the key pair names Lightsail accepts.
var keyPairNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// checkRDP checks the Remote Desktop keys of providers.lightsail: the port,
// and that each rdp_key_pairs file holds an unencrypted RSA private key
// only its owner can read (the EC2 GetPasswordData scheme decrypts with
// RSA). The keys are parsed and dropped.
func (c *checker) checkRDP(ls *Lightsail) {
	const key = "providers.lightsail"
	if ls.RDPPort < 1 || ls.RDPPort > 65535 {
		c.errorf(key+".rdp_port", "%d is not a port number (1-65535)", ls.RDPPort)
	}
	names := make([]string, 0, len(ls.RDPKeyPairs))
	for name := range ls.RDPKeyPairs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		k := joinKey(key+".rdp_key_pairs", name)
		file := ls.RDPKeyPairs[name]
		switch {
		case !keyPairNameRe.MatchString(name):
			c.errorf(k, "%q is not a Lightsail key pair name", name)
			continue
		case file == "":
			c.errorf(k, "needs the path of the key pair's private key")
			continue
		}
		if !c.skipFiles {
			c.checkRSAKey(k, file)
		}
	}
}

// windowsUser is the user Lightsail issues RDP credentials for.
const windowsUser = "Administrator"

// lintRDP warns about a policy that grants rdp but whose os_users cannot
// match the Windows user Lightsail reports, so that it grants nothing.
func (c *checker) lintRDP(cfg *Config) {
	for i, p := range cfg.Policies {
		if !slices.Contains(p.Allow, CapRDP) || slices.Contains(p.Deny, CapRDP) {
			continue
		}
		match := false
		for _, u := range p.OSUsers {
			if ok, err := path.Match(u, windowsUser); err == nil && ok {
				match = true
			}
		}
		if !match {
			c.warnf(indexKey("policies", i)+".allow", "grants rdp, but os_users matches no %s, the Windows user Lightsail reports, so it grants no Remote Desktop", windowsUser)
		}
	}
}

// checkRSAKey checks that file holds an unencrypted RSA private key that
// others cannot read.
func (c *checker) checkRSAKey(key, file string) {
	c.checkKeyFile(key, file, "an RSA private key (Lightsail key pairs are RSA)", func(raw any) bool {
		_, ok := raw.(*rsa.PrivateKey)
		return ok
	})
}
