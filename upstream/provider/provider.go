// Package provider is the one list of upstream provider kinds and what each
// one means outside its own package: its name, which is also its target
// suffix (".lightsail"), its policy prefix ("lightsail:") and its config
// section (providers.lightsail); whether its targets carry a region; whether
// it can list its targets; the IAM actions it calls; and the defaults of its
// config keys.
//
// The package imports nothing of the AWS SDK, so that config, auth and
// upstream can all read it. The built-in kinds are registered once, in
// builtin.go, as a database/sql driver or a Caddy module registers itself;
// each provider package registers its constructor in its own init
// (package upstream/build), and package upstream/builtin imports them.
//
// A new kind is a folder of its own (its Provider, its section type and
// constructor, registered from its init), its descriptor here, and one
// import line in upstream/builtin: the section's decoding and validation
// come from Descriptor.NewSection and Validate, and target names, policy
// prefixes, ssh-config and the IAM test read the descriptor.
package provider

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Descriptor describes one provider kind.
type Descriptor struct {
	// Name names the kind: target names end in "."+Name, policy target
	// patterns start with Name+":", and its config section is
	// providers.Name. Lower case letters and digits.
	Name string
	// Regional reports whether the kind's targets live in an AWS region
	// that a target name may give (web-1.us-east-1.lightsail).
	Regional bool
	// Lists reports whether the kind can list every target it serves
	// (its Provider implements upstream.Lister).
	Lists bool
	// InstanceIDs reports whether the kind's targets may be typed by EC2
	// instance id ("i-0123456789abcdef0.serial"); an id typed without a
	// suffix is an EC2 target.
	InstanceIDs bool
	// Capability, if not empty, is the policy capability that every login
	// to the kind's targets needs on top of a matching policy and OS user
	// (CapSerialConsole). Policies grant it in allow; it is denied by
	// default.
	Capability string
	// OSUsers, if not empty, are the only OS users the kind's targets
	// have (the serial console's port, port0); the target listing shows
	// those a policy allows rather than the policy's patterns.
	OSUsers []string
	// Recorded reports whether every session to the kind's targets is
	// recorded, with or without a pty, whatever audit.record_exec says; a
	// bastion without audit.recordings refuses such logins.
	Recorded bool
	// Dir is the folder of the package that implements the kind, relative
	// to the module root (upstream/lightsail); the IAM test scans it.
	Dir string
	// IAMActions are the AWS actions the kind calls, as "service:Action";
	// the IAM policy in deploy/iam must grant exactly these.
	IAMActions []string
	// DefaultAddress is the address choice used when the config leaves
	// address out; empty if the kind has none.
	DefaultAddress string
	// DefaultPort is the SSH port used when the config leaves port out;
	// zero if the kind has none.
	DefaultPort int
	// DefaultResolveCache is how long name lookups are cached when the
	// config leaves resolve_cache out; zero if the kind does not cache.
	DefaultResolveCache time.Duration

	// NewSection, for a kind whose config section the config package does
	// not spell out (one added in a folder of its own), returns a pointer
	// to a new value of the kind's section type, with yaml tags: the
	// config decodes providers.Name into it, with the same unknown-key and
	// type errors as every other section, and keeps it in
	// config.Providers.Sections. Nil for the built-in kinds.
	NewSection func() any
	// Validate checks a decoded section (what NewSection returned) and
	// returns one error per problem, each reported at the section's line.
	// Nil accepts any section.
	Validate func(section any) []error
}

// Suffix returns the target name suffix that selects d, such as ".ec2".
func (d Descriptor) Suffix() string { return "." + d.Name }

// Prefix returns the policy target pattern prefix that selects d, such as
// "ec2:".
func (d Descriptor) Prefix() string { return d.Name + ":" }

// Section returns d's config section, such as "providers.ec2".
func (d Descriptor) Section() string { return "providers." + d.Name }

// mu protects registry.
var (
	mu       sync.RWMutex
	registry []Descriptor
)

// Register adds d to the registry. It panics if d.Name is empty, not lower
// case, or already registered; it is meant to be called from init.
func Register(d Descriptor) {
	if d.Name == "" || strings.ToLower(d.Name) != d.Name || strings.ContainsAny(d.Name, ".: ") {
		panic(fmt.Sprintf("provider: invalid name %q", d.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range registry {
		if r.Name == d.Name {
			panic(fmt.Sprintf("provider: %q registered twice", d.Name))
		}
	}
	registry = append(registry, d)
}

// All returns the registered descriptors in registration order.
func All() []Descriptor {
	mu.RLock()
	defer mu.RUnlock()
	return append([]Descriptor(nil), registry...)
}

// Lookup returns the descriptor named name.
func Lookup(name string) (Descriptor, bool) {
	mu.RLock()
	defer mu.RUnlock()
	for _, d := range registry {
		if d.Name == name {
			return d, true
		}
	}
	return Descriptor{}, false
}

// Names returns the registered names in registration order.
func Names() []string {
	var out []string
	for _, d := range All() {
		out = append(out, d.Name)
	}
	return out
}

// Suffixes returns the registered target suffixes in registration order.
func Suffixes() []string {
	var out []string
	for _, d := range All() {
		out = append(out, d.Suffix())
	}
	return out
}

// Prefixes returns the registered policy prefixes in registration order.
func Prefixes() []string {
	var out []string
	for _, d := range All() {
		out = append(out, d.Prefix())
	}
	return out
}

// Or joins items as "a, b or c".
func Or(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
