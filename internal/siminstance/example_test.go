package siminstance_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"

	"bastion/internal/siminstance"

	"golang.org/x/crypto/ssh"
)

// ExampleStart runs a simulated instance that admits one key, logs in to it
// and runs a command.
func ExampleStart() {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	userKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		log.Fatal(err)
	}

	inst, err := siminstance.Start(siminstance.Options{
		Addr: "127.0.0.1:0",
		Name: "web-1",
		Authorize: siminstance.AcceptKeys(func(user string) []ssh.PublicKey {
			if user == "ec2-user" {
				return []ssh.PublicKey{userKey.PublicKey()}
			}
			return nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer inst.Close()

	client, err := ssh.Dial("tcp", inst.Addr(), &ssh.ClientConfig{
		User:            "ec2-user",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(userKey)},
		HostKeyCallback: ssh.FixedHostKey(inst.HostKey()),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()
	out, err := session.Output(`echo "hello from $BASTION_DEMO_INSTANCE"`)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: hello from web-1
}
