package config

import "testing"

func TestAuditFailureKeys(t *testing.T) {
	for _, tc := range []struct {
		name, text      string
		onFailure       string
		maxRec, minFree Size
	}{
		{"defaults", "", OnFailureRefuse, DefaultMaxRecordingSize, DefaultMinFreeSpace},
		{"set", "audit: {on_failure: continue, max_recording_size: 64KiB, min_free_space: 1GB}\n", OnFailureContinue, 64 << 10, 1e9},
		{"zero", "audit: {max_recording_size: 0, min_free_space: 0}\n", OnFailureRefuse, 0, 0},
		{"bytes", "audit: {max_recording_size: 1048576, min_free_space: 512 MiB}\n", OnFailureRefuse, 1 << 20, 512 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := parseString(t, minimalHead+tc.text).Audit
			if a.OnFailure != tc.onFailure || a.MaxRecordingSize != tc.maxRec || a.MinFreeSpace != tc.minFree {
				t.Errorf("got on_failure %q, max_recording_size %s, min_free_space %s; want %q, %s, %s",
					a.OnFailure, a.MaxRecordingSize, a.MinFreeSpace, tc.onFailure, tc.maxRec, tc.minFree)
			}
		})
	}
	for _, tc := range []struct{ name, text, want string }{
		{"on_failure", "audit:\n  on_failure: ignore\n", `config:4: audit.on_failure: "ignore" is neither "refuse" nor "continue"`},
		{"unit", "audit:\n  min_free_space: 64 parsecs\n", `config:4: audit.min_free_space: "64 parsecs" is not a size (write a whole number and a unit, such as "64MiB" or "1GiB")`},
		{"negative", "audit:\n  max_recording_size: -1MiB\n", `config:4: audit.max_recording_size: "-1MiB" is not a size (write a whole number and a unit, such as "64MiB" or "1GiB")`},
		{"tiny", "audit:\n  max_recording_size: 100B\n", `config:4: audit.max_recording_size: 100B is too small for a recording's header; use at least 4KiB (or 0 for no cap)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseError(t, minimalHead+tc.text); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
