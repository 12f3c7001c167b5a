package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size is a number of bytes written as "64MiB", "1GiB", "512KiB", "10MB" or
// a plain number of bytes in YAML.
type Size int64

// sizeUnits are the suffixes Size accepts, longest first so that "MiB" is
// not read as "B".
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// UnmarshalYAML sets s from a size such as "64MiB" (binary units KiB, MiB,
// GiB, TiB; decimal KB, MB, GB, TB; B) or a whole number of bytes. An
// empty value leaves s unchanged.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as \"64MiB\", got %s", describe(n))
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize parses a size as Size's YAML form does.
func ParseSize(text string) (int64, error) {
	t := strings.TrimSpace(text)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.bytes
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (write a whole number and a unit, such as \"64MiB\" or \"1GiB\")", text)
	}
	return n * mult, nil
}

// MarshalYAML writes s in the form UnmarshalYAML reads.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// String returns s in the largest binary unit that divides it, such as
// "64MiB", or in bytes.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		bytes  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.bytes == 0 {
			return strconv.FormatInt(int64(s)/u.bytes, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}
