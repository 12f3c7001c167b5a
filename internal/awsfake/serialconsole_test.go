package awsfake

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"
)

// pushSerial pushes pub for id's serial console with the real SDK client.
func pushSerial(t *testing.T, s *Server, id string, pub ssh.PublicKey) error {
	t.Helper()
	_, err := eicClient(t, s, clientConfig{}).SendSerialConsoleSSHPublicKey(t.Context(), &ec2instanceconnect.SendSerialConsoleSSHPublicKeyInput{
		InstanceId:   aws.String(id),
		SSHPublicKey: aws.String(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))),
	})
	return err
}

// dialSerial logs in to the endpoint as user with signer.
func dialSerial(t *testing.T, c *SerialConsole, user string, signer ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", c.Addr(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(c.HostKey()),
		Timeout:         10 * time.Second,
	})
}

// TestSendSerialConsoleSSHPublicKeyErrors checks the documented errors, in
// the order AWS gives them, through the real SDK client.
func TestSendSerialConsoleSSHPublicKeyErrors(t *testing.T) {
	s := startServer(t, Options{})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.1", Tags: map[string]string{"Name": "web-1"}})
	s.AddEC2Instance(EC2Instance{ID: "i-0000000000000000a", PrivateIP: "10.0.0.2", InstanceType: "t2.micro"})
	s.AddEC2Instance(EC2Instance{ID: "i-0000000000000000b", PrivateIP: "10.0.0.3", State: "stopped"})
	pub, _ := newEd25519Key(t)

	if err := pushSerial(t, s, eicInstance, pub); errorCode(err) != "SerialConsoleAccessDisabledException" {
		t.Fatalf("push with access disabled: %v, want SerialConsoleAccessDisabledException", err)
	}
	s.SetSerialConsoleAccess(DefaultRegion, true)
	for _, tc := range []struct{ id, code string }{
		{"i-0000000000000000a", "EC2InstanceTypeInvalidException"},
		{"i-0000000000000000b", "EC2InstanceStateInvalidException"},
		{"i-0000000000000000c", "EC2InstanceNotFoundException"},
		{"web-1", "InvalidArgsException"},
	} {
		if err := pushSerial(t, s, tc.id, pub); errorCode(err) != tc.code {
			t.Errorf("push to %s: %v, want %s", tc.id, err, tc.code)
		}
	}
	if err := pushSerial(t, s, eicInstance, pub); err != nil {
		t.Fatalf("push: %v", err)
	}
	err := pushSerial(t, s, eicInstance, pub)
	if errorCode(err) != "SerialConsoleSessionLimitExceededException" || !strings.Contains(err.Error(), msgSerialSessionLimit) {
		t.Errorf("second push: %v, want SerialConsoleSessionLimitExceededException with %q", err, msgSerialSessionLimit)
	}
}

// TestSerialConsoleEndpoint logs in with the pushed key, gets a console
// that echoes, and checks that the session is one per instance: a second
// login is refused, and a push is refused until the teardown has passed
// after the connection ended.
func TestSerialConsoleEndpoint(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, SerialConsoleTeardown: 5 * time.Second})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.1", Tags: map[string]string{"Name": "web-1"}})
	s.SetSerialConsoleAccess(DefaultRegion, true)
	c, err := s.StartSerialConsole(SerialConsoleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pub, signer := newEd25519Key(t)
	_, other := newEd25519Key(t)
	if err := pushSerial(t, s, eicInstance, pub); err != nil {
		t.Fatal(err)
	}
	user := eicInstance + "." + SerialConsolePort
	if _, err := dialSerial(t, c, user, other); err == nil {
		t.Fatal("login with a key that was not pushed: admitted")
	}
	if _, err := dialSerial(t, c, eicInstance+".port1", signer); err == nil {
		t.Fatal("login to port1: admitted")
	}
	cl, err := dialSerial(t, c, user, signer)
	if err != nil {
		t.Fatalf("login with the pushed key: %v", err)
	}
	if _, err := dialSerial(t, c, user, signer); err == nil {
		t.Fatal("second login with the same key: admitted")
	}
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	sess.Stdin = strings.NewReader("root\recho hello-ttyS0\rhostname\r")
	if err := sess.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("console session: %v", err)
	}
	for _, want := range []string{"web-1 login: root\r\n", "[root@web-1 ~]# echo hello-ttyS0\r\nhello-ttyS0\r\n", "hostname\r\nweb-1\r\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console output %q: want %q", out.String(), want)
		}
	}
	cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for s.SerialConsoleConnected(eicInstance) {
		if time.Now().After(deadline) {
			t.Fatal("session still connected 20s after the client closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pushSerial(t, s, eicInstance, pub); errorCode(err) != "SerialConsoleSessionLimitExceededException" {
		t.Errorf("push during the teardown: %v, want SerialConsoleSessionLimitExceededException", err)
	}
	clock.Advance(6 * time.Second)
	if err := pushSerial(t, s, eicInstance, pub); err != nil {
		t.Errorf("push after the teardown: %v", err)
	}
	// An unused key expires with the session after PushedKeyTTL.
	clock.Advance(DefaultPushedKeyTTL)
	if _, err := dialSerial(t, c, user, signer); err == nil {
		t.Error("login with an expired key: admitted")
	}
	if err := pushSerial(t, s, eicInstance, pub); err != nil {
		t.Errorf("push after the unused key expired: %v", err)
	}
}

// ExampleServer_StartSerialConsole starts the serial console endpoint of
// the fake's default region, with serial console access enabled for it.
func ExampleServer_StartSerialConsole() {
	s, err := Start(Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.SetSerialConsoleAccess(DefaultRegion, true)
	s.AddEC2Instance(EC2Instance{ID: "i-0123456789abcdef0", PrivateIP: "10.0.0.1", Tags: map[string]string{"Name": "web-1"}})
	c, err := s.StartSerialConsole(SerialConsoleOptions{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// Push a key with SendSerialConsoleSSHPublicKey, then log in to
	// c.Addr() as i-0123456789abcdef0.port0 within 60 seconds, checking
	// c.HostKey().
	fmt.Println(c.HostKey().Type())
	// Output: ssh-ed25519
}
