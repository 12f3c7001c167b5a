package tofu_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/tofu"
)

func Example() {
	dir, _ := os.MkdirTemp("", "tofu-example")
	defer os.RemoveAll(dir)

	mode, _ := tofu.ParseMode("tofu")
	store, err := tofu.Open(filepath.Join(dir, "ec2_known_hosts"), mode)
	if err != nil {
		fmt.Println(err)
		return
	}
	store.OnLearn = func(id string, key ssh.PublicKey) { fmt.Println("learned a host key for", id) }

	newKey := func() ssh.PublicKey {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		k, _ := ssh.NewPublicKey(pub)
		return k
	}
	first, other := newKey(), newKey()
	check := store.Callback("i-0123456789abcdef0")

	fmt.Println(check("10.0.0.5:22", nil, first))
	fmt.Println(check("10.0.0.5:22", nil, first))
	fmt.Println(upstream.PublicMessage(check("10.0.0.5:22", nil, other)))
	// Output:
	// learned a host key for i-0123456789abcdef0
	// <nil>
	// <nil>
	// upstream host key differs from the one recorded for i-0123456789abcdef0
}
