package static_test

import (
	"context"
	"fmt"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/static"
)

func ExampleNew() {
	signer, err := static.LoadSigner("/etc/bastion/keys/legacy_db")
	if err != nil {
		fmt.Println(err)
		return
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH"))
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := static.New([]static.Host{{
		Name:    "legacy-db",
		Address: "10.0.0.5:22",
		User:    "admin",
		Signer:  signer,
		HostKey: hostKey,
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	targets, _ := p.Resolve(ctx, upstream.Query{Name: "legacy-db"})
	creds, err := p.Credentials(ctx, targets[0], "admin")
	if err != nil {
		fmt.Println(upstream.PublicMessage(err)) // "this host admits only admin" for another user
		return
	}
	fmt.Println(targets[0], creds.Addr, creds.HostKeySource)
}
