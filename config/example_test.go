package config_test

import (
	"fmt"

	"bastion/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
host_key: host_ed25519
host_ca_key: host_ca_ed25519
users:
  - name: alice
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH alice@laptop"]
    groups: [dev]
providers:
  lightsail: {regions: [us-east-1]}
limits: {idle_timeout: 30m}
`), "/etc/bastion/config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	alice := cfg.UserByName("alice")
	fmt.Println(cfg.Listen, cfg.HostKey)
	fmt.Println(alice.PublicKeys[0].Type(), alice.Groups)
	fmt.Println(cfg.Providers.Lightsail.Address, cfg.Providers.Lightsail.Port)
	fmt.Println(cfg.Limits.IdleTimeout, cfg.Limits.HandshakeTimeout)
	// Output:
	// :2222 /etc/bastion/host_ed25519
	// ssh-ed25519 [dev]
	// public 22
	// 30m0s 10s
}

func ExampleParse_errors() {
	_, err := config.Parse([]byte(`
host_key: host_ed25519
users:
  - name: alice
    keys: ["ssh-ed25519 AAAA"]
providers:
  lightsial: {regions: [us-east-1]}
`), "config.yaml")
	fmt.Println(err)
	// Output:
	// config.yaml:1: host_ca_key: required (the file is created on first start if missing)
	// config.yaml:5: users[0].keys[0]: not a public key in authorized_keys format
	// config.yaml:7: providers.lightsial: unknown key
}
