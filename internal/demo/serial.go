package demo

import (
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// serialTeardown is how long the demo's serial console keeps a session
// after its connection ends. AWS takes 30 seconds, which a person trying
// the demo twice in a row would only find puzzling; the demo frees it at
// once.
const serialTeardown = time.Millisecond

// startSerialConsole enables the EC2 serial console for the account and
// starts its endpoint on a loopback address of its own, as AWS serves it
// at serial-console.ec2-instance-connect.<region>.aws:22. It serves the
// EC2 instances: `ssh -J bastion port0@api-1.serial`.
func (a *Account) startSerialConsole(log *zap.Logger) error {
	ls, err := listeners(1)
	if err != nil {
		return err
	}
	a.Fake.SetSerialConsoleAccess(Region, true)
	sc, err := a.Fake.StartSerialConsole(awsfake.SerialConsoleOptions{Listener: ls[0], Region: Region, Logger: log.Named("serial-console")})
	if err != nil {
		ls[0].Close()
		return fmt.Errorf("starting the serial console endpoint: %w", err)
	}
	a.serial = sc
	return nil
}

// serialConsoleConfig is the providers.ec2.serial_console of the demo's
// bastion config: the endpoint and its host key's fingerprint, as the
// config pins them for a region AWS's table does not cover.
func (a *Account) serialConsoleConfig() string {
	host, port, _ := net.SplitHostPort(a.serial.Addr())
	return fmt.Sprintf("{endpoint: %q, host_keys: {%s: [%q]}}", net.JoinHostPort(host, port), Region, ssh.FingerprintSHA256(a.serial.HostKey()))
}
