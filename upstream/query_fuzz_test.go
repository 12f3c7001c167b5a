package upstream

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// fuzzNameRE is the fuzz oracle's own statement of what a parsed name may
// be (DESIGN.md, "Target names"): it never starts with '-', so that it can
// never be read as an option by a tool it is handed to, and holds no space,
// ':', '@', '/' or control character.
var fuzzNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// FuzzParseQuery checks that ParseQuery never panics and that every query it
// accepts satisfies the invariants of DESIGN.md's target names:
//
//   - a name longer than MaxNameLen is refused with ErrNameTooLong, and no
//     error message is much longer than a quoted name of the cap;
//   - the name is well formed and the provider one of the four, or empty;
//   - a region is a region name, only comes with a provider suffix, and
//     never with .static;
//   - an instance id is always an EC2 (or EC2 serial console) query,
//     lower-cased;
//   - String gives back what was typed, up to the case of the suffix and of
//     an instance id and the ".ec2" an instance id implies;
//   - parsing String again gives the same query (String is canonical).
//
// Seeds live in testdata/fuzz/FuzzParseQuery.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"web-1", "web-1.lightsail", "web-1.us-east-1.lightsail", "i-0123456789abcdef0",
		"I-0123ABCD.EC2", "legacy-db.static", "app.prod.us-gov-west-1.ec2",
		"web-1.serial", "i-0123456789abcdef0.SERIAL", "web-1.us-east-1.serial",
	} {
		f.Add(s)
	}
	f.Add(strings.Repeat("a", MaxNameLen))
	f.Add(strings.Repeat("a", MaxNameLen+1))
	f.Add(strings.Repeat("a", MaxNameLen-4) + ".ec2")
	f.Fuzz(func(t *testing.T, typed string) {
		q, err := ParseQuery(typed)
		if len(typed) > MaxNameLen && !errors.Is(err, ErrNameTooLong) {
			t.Errorf("ParseQuery of %d bytes = %+v, %v; want ErrNameTooLong", len(typed), q, err)
		}
		// %q spells a byte as at most 4 (\xff), plus the sentence.
		if limit := 4*MaxNameLen + 64; err != nil && len(err.Error()) > limit {
			t.Errorf("ParseQuery of %d bytes: error of %d bytes; want at most %d", len(typed), len(err.Error()), limit)
		}
		if err != nil {
			if q != (Query{}) {
				t.Errorf("ParseQuery(%q) = %+v, %v; want the zero Query with an error", typed, q, err)
			}
			if !strings.HasPrefix(err.Error(), "parsing target ") {
				t.Errorf("ParseQuery(%q) error %q: want it to start with \"parsing target \"", typed, err)
			}
			return
		}
		if !fuzzNameRE.MatchString(q.Name) {
			t.Errorf("ParseQuery(%q).Name = %q: not a well-formed name", typed, q.Name)
		}
		switch q.Provider {
		case "", ProviderLightsail, ProviderEC2, ProviderStatic, ProviderSerial:
		default:
			t.Errorf("ParseQuery(%q).Provider = %q: want one of \"\", lightsail, ec2, static, serial", typed, q.Provider)
		}
		if q.Region != "" {
			if !IsRegion(q.Region) {
				t.Errorf("ParseQuery(%q).Region = %q: not a region name", typed, q.Region)
			}
			if q.Provider == "" || q.Provider == ProviderStatic {
				t.Errorf("ParseQuery(%q) = %+v: a region needs a lightsail, ec2 or serial suffix", typed, q)
			}
		}
		if IsInstanceID(strings.ToLower(q.Name)) {
			if q.Provider != ProviderEC2 && q.Provider != ProviderSerial {
				t.Errorf("ParseQuery(%q) = %+v: an instance id is an EC2 target or its serial console", typed, q)
			}
			if q.Name != strings.ToLower(q.Name) {
				t.Errorf("ParseQuery(%q).Name = %q: an instance id is lower-cased", typed, q.Name)
			}
		}

		s := q.String()
		impliedEC2 := IsInstanceID(q.Name) && strings.EqualFold(s, typed+".ec2")
		if !strings.EqualFold(s, typed) && !impliedEC2 {
			t.Errorf("ParseQuery(%q).String() = %q: want what was typed, up to case", typed, s)
		}
		again, err := ParseQuery(s)
		if err != nil {
			t.Fatalf("ParseQuery(%q) = %+v, whose String %q does not parse: %v", typed, q, s, err)
		}
		if again != q {
			t.Errorf("ParseQuery(%q) = %+v, but ParseQuery(%q) = %+v: want the same query", typed, q, s, again)
		}
	})
}
