package config

import (
	"strings"
	"testing"
)

func TestPolicyGroupWarning(t *testing.T) {
	cfg, err := Parse([]byte(`host_key: /k
host_ca_key: /ca
users:
  - {name: alice, keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH"], groups: [dev]}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
  - {groups: [devs, nobody], targets: ["*"], os_users: ["*"]}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		`c.yaml:7: policies[1].groups[0]: no user has group "devs", so this policy lets nobody in; did you mean "dev"?`,
		`c.yaml:7: policies[1].groups[1]: no user has group "nobody", so this policy lets nobody in`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\ngot  %q\nwant %q", got, want)
	}
}

func TestDidYouMean(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"lightsial:", `; did you mean "lightsail:"?`},
		{"us-eats-1", `; did you mean "us-east-1"?`},
		{"zz", ""},
		{"dev", ""},
	} {
		t.Run(tc.s, func(t *testing.T) {
			if got := didYouMean(tc.s, []string{"lightsail:", "ec2:", "us-east-1", "dev"}); got != tc.want {
				t.Errorf("didYouMean(%q): got %q, want %q", tc.s, got, tc.want)
			}
		})
	}
}
