package proxy

import (
	"testing"
	"time"
)

func TestConnLimitDue(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		lim       Limits
		age, idle time.Duration // since start, since the last activity
		jumping   int
		links     int
		wantLimit string
		wantWait  time.Duration
	}{
		{"no limits", Limits{}, time.Hour, time.Hour, 0, 0, "", connLimitsRecheck},
		{"idle due", Limits{IdleTimeout: 2 * time.Second}, 5 * time.Second, 2 * time.Second, 0, 0, "idle_timeout", 0},
		{"idle not yet", Limits{IdleTimeout: 2 * time.Second}, 5 * time.Second, 500 * time.Millisecond, 0, 0, "", 1500 * time.Millisecond},
		{"max due", Limits{MaxSession: 3 * time.Second, IdleTimeout: time.Hour}, 3 * time.Second, 0, 0, 0, "max_session", 0},
		{"max first", Limits{MaxSession: 3 * time.Second, IdleTimeout: 2 * time.Second}, 2500 * time.Millisecond, 0, 0, 0, "", 500 * time.Millisecond},
		{"live link", Limits{MaxSession: time.Second, IdleTimeout: time.Second}, time.Hour, time.Hour, 0, 1, "", connLimitsRecheck},
		{"pending jump", Limits{MaxSession: time.Second, IdleTimeout: time.Second}, time.Hour, time.Hour, 1, 0, "", connLimitsRecheck},
		{"long limit", Limits{IdleTimeout: 30 * time.Minute}, 0, 0, 0, 0, "", connLimitsRecheck},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &Server{}
			srv.SetRules(&Rules{Limits: tc.lim})
			c := &conn{srv: srv, links: map[*link]struct{}{}}
			for range tc.links {
				c.links[&link{}] = struct{}{}
			}
			now := start.Add(tc.age)
			c.idle.last, c.idle.jumping = now.Add(-tc.idle), tc.jumping
			wait, limit, msg := c.limitDue(start, now)
			if limit != tc.wantLimit {
				t.Fatalf("limit: got %q (%q), want %q", limit, msg, tc.wantLimit)
			}
			if limit == "" && wait != tc.wantWait {
				t.Errorf("wait: got %s, want %s", wait, tc.wantWait)
			}
			if limit != "" && msg == "" {
				t.Errorf("limit %s without a message for the person", limit)
			}
		})
	}
}
