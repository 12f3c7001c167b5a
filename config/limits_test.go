package config

import (
	"strings"
	"testing"
)

// TestLinkLimits: max_links and max_links_per_user, their deprecated names
// max_sessions and max_sessions_per_user (with a warning naming the new
// key), and max_links_per_connection's default.
func TestLinkLimits(t *testing.T) {
	tests := []struct {
		name                    string
		limits                  string
		links, perUser, perConn int
		warnings                []string
	}{
		{"defaults", "{}", 0, 0, DefaultMaxLinksPerConnection, nil},
		{"new keys", "{max_links: 100, max_links_per_user: 3, max_links_per_connection: 4}", 100, 3, 4, nil},
		{"no per-connection limit", "{max_links_per_connection: 0}", 0, 0, 0, nil},
		{"deprecated keys", "{max_sessions: 100, max_sessions_per_user: 3}", 100, 3, DefaultMaxLinksPerConnection, []string{
			"config:1: limits.max_sessions: deprecated; use limits.max_links (it counts links and inner logins in progress, not connections)",
			"config:1: limits.max_sessions_per_user: deprecated; use limits.max_links_per_user (it counts links and inner logins in progress, not connections)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseString(t, "limits: "+tc.limits+"\n"+minimalHead)
			l := cfg.Limits
			if l.MaxLinks != tc.links || l.MaxLinksPerUser != tc.perUser || l.MaxLinksPerConnection != tc.perConn {
				t.Errorf("got max_links %d, max_links_per_user %d, max_links_per_connection %d; want %d, %d, %d",
					l.MaxLinks, l.MaxLinksPerUser, l.MaxLinksPerConnection, tc.links, tc.perUser, tc.perConn)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.warnings, "\n") {
				t.Errorf("warnings:\ngot  %q\nwant %q", got, tc.warnings)
			}
		})
	}
}

func TestLinkLimitErrors(t *testing.T) {
	tests := []struct{ name, limits, want string }{
		{"both names", "{max_sessions: 5, max_links: 6}", "config:1: limits.max_sessions: set only limits.max_links; limits.max_sessions is its deprecated name"},
		{"both per-user names", "{max_sessions_per_user: 5, max_links_per_user: 6}", "config:1: limits.max_sessions_per_user: set only limits.max_links_per_user; limits.max_sessions_per_user is its deprecated name"},
		{"negative deprecated", "{max_sessions: -1}", "config:1: limits.max_sessions: must not be negative (0 means no limit)"},
		{"negative per connection", "{max_links_per_connection: -1}", "config:1: limits.max_links_per_connection: must not be negative (0 means no limit)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseError(t, "limits: "+tc.limits+"\n"+minimalHead); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
