package config

import (
	"strings"
	"testing"
)

func TestExecLoopholeWarning(t *testing.T) {
	const users = "users: [{name: alice, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U\"], groups: [dev]}]\n"
	for _, tc := range []struct {
		name, policy, want string
	}{
		{"shell denied, exec allowed", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [shell]}`,
			"config:5: policies[0].deny: denies shell but not exec, and an exec can start a shell or an SFTP server; add exec to deny for the denial to hold"},
		{"sftp and shell denied", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [sftp, shell]}`,
			"config:5: policies[0].deny: denies shell and sftp but not exec, and an exec can start a shell or an SFTP server; add exec to deny for the denial to hold"},
		{"exec denied too", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [shell, sftp, exec]}`, ""},
		{"nothing denied", `{groups: [dev], targets: ["*"], os_users: ["*"]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+users+"policies:\n  - "+tc.policy+"\n"), "")
			if err != nil {
				t.Fatalf("got error %v, want a warning at most", err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != tc.want {
				t.Errorf("warnings: got %q, want %q", got, tc.want)
			}
		})
	}
}
