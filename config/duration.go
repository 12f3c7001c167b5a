package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// UnmarshalYAML sets d from a duration string such as "30s", "10m", "1h30m"
// or "12h", in the syntax of time.ParseDuration. A bare number other than 0
// is an error: "30" could mean seconds or minutes, so a unit is required.
// An empty value leaves d unchanged.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"30s\", got %s", describe(n))
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!int", "!!float":
		if n.Value == "0" {
			*d = 0
			return nil
		}
		return fmt.Errorf("duration %s needs a unit, such as %q or %q", n.Value, n.Value+"s", n.Value+"m")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write a number and a unit, such as \"30s\", \"10m\" or \"12h\")", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d in the form UnmarshalYAML reads, such as "1m30s".
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// String returns d formatted as time.Duration does, such as "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }
