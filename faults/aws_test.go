package faults

import (
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
)

const (
	// awsFaultTimeout is the bastion's aws_timeout in these tests. The
	// fake makes an RSA key for each GetInstanceAccessDetails, which under
	// -race on a loaded machine can take most of a second.
	awsFaultTimeout = 2 * time.Second
	// awsSlack is how much longer than aws_timeout a person may wait for
	// the reason an AWS call failed: the handshakes around it, on a loaded
	// machine. It is less than the proxy's own backstop (aws_timeout + 2s),
	// so a provider that does not enforce aws_timeout itself fails.
	awsSlack = 1500 * time.Millisecond
)

// TestAWSFaults breaks the AWS API under the Lightsail provider (the real
// SDK client against internal/awsfake) and checks what the person sees: one
// line, "bastion: web-1: <reason naming the operation>", as the rejection
// of the channel or as the banner of the inner authentication, within
// aws_timeout plus a little; and that nothing leaks.
func TestAWSFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(f *awsfake.Server)
		want   string
	}{
		{
			name:   "down",
			inject: func(f *awsfake.Server) { f.Close() },
			want:   "Lightsail GetInstance failed: endpoint unreachable",
		},
		{
			name:   "hang",
			inject: func(f *awsfake.Server) { f.SetFault("GetInstanceAccessDetails", awsfake.Fault{Hang: true}) },
			want:   "Lightsail GetInstanceAccessDetails timed out after " + awsFaultTimeout.String(),
		},
		{
			name:   "slow",
			inject: func(f *awsfake.Server) { f.SetFault("GetInstance", awsfake.Fault{Latency: 5 * awsFaultTimeout}) },
			want:   "Lightsail GetInstance timed out after " + awsFaultTimeout.String(),
		},
		{
			name:   "throttled",
			inject: func(f *awsfake.Server) { f.SetFault("GetInstanceAccessDetails", awsfake.Fault{ThrottleFirst: 1000}) },
			want:   "Lightsail GetInstanceAccessDetails failed: ThrottlingException",
		},
		{
			name:   "malformed",
			inject: func(f *awsfake.Server) { f.SetFault("GetInstanceAccessDetails", awsfake.Fault{Malformed: true}) },
			want:   "Lightsail GetInstanceAccessDetails failed: malformed response",
		},
		{
			name:   "denied",
			inject: func(f *awsfake.Server) { f.SetFault("GetInstance", awsfake.Fault{ErrorCode: "AccessDeniedException"}) },
			want:   "Lightsail GetInstance failed: AccessDeniedException",
		},
	}
	for _, m := range modes {
		for _, tc := range tests {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				a := e.startAWS("web-1", "warm-up")
				b := e.startBastion(bastionOptions{aws: a, awsTimeout: awsFaultTimeout})
				// A first session proves the wiring; its instance is
				// another one, so nothing about web-1 is cached.
				b.checkWorks(t, m, "warm-up", e.me)
				base := takeBaseline(t)

				tc.inject(a.fake)
				start := time.Now()
				l, err := m.login(b, "web-1", e.me)
				if err == nil && m.name == "direct" {
					// Direct mode refuses the first channel.
					var s interface{ Close() error }
					s, err = l.outer.NewSession()
					if err == nil {
						s.Close()
					}
				}
				elapsed := time.Since(start)
				if err == nil {
					l.close()
					t.Fatalf("login to web-1 with AWS %s: succeeded, want a refusal", tc.name)
				}
				got := told(err, l)
				if want := "bastion: web-1: " + tc.want; got != want {
					t.Errorf("told: got %q, want %q (error %v)", got, want, err)
				}
				if strings.ContainsAny(got, "\r\n") {
					t.Errorf("told %q: want one line", got)
				}
				if limit := awsFaultTimeout + awsSlack; elapsed > limit {
					t.Errorf("refusal after %s, want it within %s", elapsed.Round(time.Millisecond), limit)
				}
				l.close()
				base.back(t, b.srv)
			})
		}
	}
}
