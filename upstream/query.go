package upstream

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"bastion/upstream/provider"
)

var (
	// regionPattern matches AWS region names such as us-east-1, us-gov-west-1.
	regionPattern = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`)
	// instanceIDPattern matches EC2 instance ids (8 or 17 hex digits).
	instanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	// namePattern is what an instance name may look like once the provider
	// and region suffixes are removed.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// MaxNameLen is the longest target name, in bytes, that ParseQuery
// accepts: the DNS limit on a host name. A person types the name before any
// policy has looked at it, so it must be bounded before it reaches a cache,
// a certificate, a log line or an audit event.
const MaxNameLen = 253

// ErrNameTooLong is the error, wrapped, of a target name longer than
// MaxNameLen. Its message does not quote the name.
var ErrNameTooLong = fmt.Errorf("target name is longer than %d bytes", MaxNameLen)

// IsInstanceID reports whether s looks like an EC2 instance id.
func IsInstanceID(s string) bool { return instanceIDPattern.MatchString(s) }

// IsRegion reports whether s looks like an AWS region name.
func IsRegion(s string) bool { return regionPattern.MatchString(s) }

// ParseQuery parses a target name as typed by a person (DESIGN.md, "Target
// names"): "web-1", "web-1.lightsail", "web-1.us-east-1.lightsail",
// "i-0123456789abcdef0", "i-….ec2", "web-1.eu-west-1.ec2", "legacy-db.static",
// and the serial consoles "web-1.serial", "i-….serial", "web-1.us-east-1.serial".
// An instance id without a suffix implies the EC2 provider; with one, the
// suffix's kind must take instance ids (provider.Descriptor.InstanceIDs). A name longer
// than MaxNameLen is refused with ErrNameTooLong, before any other check.
func ParseQuery(typed string) (Query, error) {
	if len(typed) > MaxNameLen {
		return Query{}, fmt.Errorf("parsing target of %d bytes: %w", len(typed), ErrNameTooLong)
	}
	// Instance names are case-sensitive; the suffixes and ids are not.
	s := typed
	var q Query
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		if d, ok := provider.Lookup(strings.ToLower(s[i+1:])); ok {
			q.Provider = d.Name
			s = s[:i]
			if j := strings.LastIndexByte(s, '.'); j > 0 && IsRegion(s[j+1:]) {
				if !d.Regional {
					return Query{}, fmt.Errorf("parsing target %q: %s targets have no region", typed, d.Name)
				}
				q.Region = s[j+1:]
				s = s[:j]
			}
		}
	}
	if !namePattern.MatchString(s) {
		return Query{}, fmt.Errorf("parsing target %q: not a valid target name", typed)
	}
	q.Name = s
	if id := strings.ToLower(s); IsInstanceID(id) {
		q.Name = id
		if q.Provider == "" {
			q.Provider = ProviderEC2
		}
		if d, ok := provider.Lookup(q.Provider); !ok || !d.InstanceIDs {
			return Query{}, fmt.Errorf("parsing target %q: an instance id is an EC2 target", typed)
		}
	}
	return q, nil
}

// Resolver finds the one target a Query names among several providers.
type Resolver struct {
	// Providers are searched concurrently. Their order does not matter:
	// an ambiguity error lists its candidates sorted by Target.String.
	Providers []Provider
}

// Provider returns the configured provider with the given name, or nil.
func (r *Resolver) Provider(name string) Provider {
	for _, p := range r.Providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Resolve returns the one target matching q. It returns an error wrapping
// ErrNotFound when nothing matches and an *AmbiguousError when several do.
// When some providers fail and others find nothing, the failure is returned,
// so that an AWS outage is not reported as "no such target".
func (r *Resolver) Resolve(ctx context.Context, q Query) (Target, error) {
	type result struct {
		targets []Target
		err     error
	}
	results := make([]result, len(r.Providers))
	var wg sync.WaitGroup
	for i, p := range r.Providers {
		if q.Provider != "" && q.Provider != p.Name() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := p.Resolve(ctx, q)
			results[i] = result{t, err}
		}()
	}
	wg.Wait()

	var found []Target
	var errs []error
	for _, res := range results {
		found = append(found, res.targets...)
		if res.err != nil {
			errs = append(errs, res.err)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		sort.SliceStable(found, func(i, j int) bool { return found[i].String() < found[j].String() })
		return Target{}, &AmbiguousError{Query: q, Candidates: found}
	case len(errs) > 0:
		return Target{}, fmt.Errorf("resolving %s: %w", q, errors.Join(errs...))
	}
	return Target{}, fmt.Errorf("resolving %s: %w", q, ErrNotFound)
}

// List returns the instances of every provider that can list them, sorted
// by Target.String (name, then region and provider). Providers are asked
// concurrently; when some fail, the others' instances are returned with the
// failures joined in the error.
func (r *Resolver) List(ctx context.Context) ([]Target, error) {
	lists := make([][]Target, len(r.Providers))
	errs := make([]error, len(r.Providers))
	var wg sync.WaitGroup
	for i, p := range r.Providers {
		l, ok := p.(Lister)
		if !ok {
			continue
		}
		wg.Go(func() { lists[i], errs[i] = l.List(ctx) })
	}
	wg.Wait()
	var all []Target
	for _, l := range lists {
		all = append(all, l...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].String() < all[j].String() })
	return all, errors.Join(errs...)
}
