package config

import (
	"slices"
	"strings"
	"testing"
)

// TestSessionControl: session_control.groups is read, and an empty group
// name is refused with its line.
func TestSessionControl(t *testing.T) {
	cfg := parseString(t, minimalHead+"session_control: {groups: [ops, sre]}\n")
	if !slices.Equal(cfg.SessionControl.Groups, []string{"ops", "sre"}) {
		t.Errorf("groups: got %q, want [ops sre]", cfg.SessionControl.Groups)
	}
	if cfg := parseString(t, minimalHead); len(cfg.SessionControl.Groups) != 0 {
		t.Errorf("default groups: got %q, want none", cfg.SessionControl.Groups)
	}
	msg := parseError(t, minimalHead+"session_control:\n  groups: [ops, \"\"]\n")
	if !strings.Contains(msg, ":4: session_control.groups[1]: must not be empty") {
		t.Errorf("empty group: got %q, want the line and key", msg)
	}
}
