package proxy

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/config"
)

// cmdRDP is the own-session command that hands out a Windows instance's
// Remote Desktop credentials: `ssh bastion rdp [--rdp-file] NAME`.
const cmdRDP = "rdp"

// rdpLocalPort is the local port the printed forward command uses.
const rdpLocalPort = 13389

// Status values of rdp_credentials_issued.
const (
	rdpIssued         = "issued"
	rdpPending        = "password_pending"
	rdpKeyPairMissing = "key_pair_missing"
	// rdpFileOnly: --rdp-file, which prints no password.
	rdpFileOnly = "rdp_file"
)

// rdpUsage is the command's usage line.
const rdpUsage = "usage: rdp [--rdp-file] TARGET"

// rdpCommand runs `rdp [--rdp-file] NAME`: under the policy's rdp
// capability, it prints what the person's RDP client needs (the user name
// and password, the forward to run, the certificate fingerprint the
// client will show, and a .rdp file), or with --rdp-file only the .rdp
// file, for `ssh bastion rdp --rdp-file win-1 > win-1.rdp`. The .rdp file
// holds no password. The handout is audited as rdp_credentials_issued,
// without the password. It returns the exit status.
func (c *conn) rdpCommand(ch ssh.Channel, args, nl string) int {
	fileOnly, typed := false, ""
	for _, a := range strings.Fields(args) {
		switch {
		case a == "--rdp-file":
			fileOnly = true
		case strings.HasPrefix(a, "-") || typed != "":
			fmt.Fprintf(ch.Stderr(), "bastion: %s%s", rdpUsage, nl)
			return 2
		default:
			typed = a
		}
	}
	if typed == "" {
		fmt.Fprintf(ch.Stderr(), "bastion: %s%s", rdpUsage, nl)
		return 2
	}
	fail := func(msg string) int {
		fmt.Fprintf(ch.Stderr(), "bastion: %s: %s%s", printable(typed), msg, nl)
		return 1
	}
	t, err := c.resolve(typed)
	if err != nil {
		return fail(publicMessage(err))
	}
	ev := audit.Event{Typed: t.typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID, Capability: config.CapRDP}
	unaudited := false
	emit := func(e audit.Event) {
		if c.audit(withRDPFields(e, ev)) != nil && !c.srv.AuditFailOpen {
			unaudited = true
		}
	}
	_, access, err := c.rdpAuthorize(t, &ev, emit)
	if err != nil {
		return fail(publicMessage(err))
	}
	status := rdpIssued
	switch {
	case fileOnly:
		status = rdpFileOnly
	case access.PasswordPending:
		status = rdpPending
	case access.Password == "":
		status = rdpKeyPairMissing
	}
	now := time.Now()
	var fps []string
	for _, cert := range access.Current(now) {
		fps = append(fps, cert.Fingerprint())
	}
	issued := audit.Event{Type: audit.TypeRDPCredentialsIssued, UpstreamAddr: access.Addr, RequestID: access.RequestID, Status: status}
	if len(fps) > 0 {
		issued.HostKeyFingerprint = fps[0]
	}
	emit(issued)
	if unaudited {
		// Failing closed: no credentials without their audit event.
		return fail(msgAuditRefused)
	}
	c.log.Info("rdp_credentials_issued", zap.String("target", t.String()), zap.String("status", status))

	var w io.Writer = ch
	if nl != "\n" {
		w = crlfWriter{ch}
	}
	if fileOnly {
		writeRDPFile(w, access.Username)
		return 0
	}
	fmt.Fprintf(w, "Remote Desktop to %s (%s)\n", printable(typed), t.String())
	fmt.Fprintf(w, "  user:      %s\n", printable(access.Username))
	switch status {
	case rdpIssued:
		fmt.Fprintf(w, "  password:  %s\n", printable(access.Password))
	case rdpPending:
		fmt.Fprintf(w, "  password:  not ready yet (Lightsail takes up to 15 minutes after an instance is created)\n")
	default:
		fmt.Fprintf(w, "  password:  encrypted to key pair %s, whose private key the bastion does not have (providers.lightsail.rdp_key_pairs)\n", printable(access.KeyPairName))
	}
	fmt.Fprintf(w, "  forward:   ssh -N -L %d:%s:%d <this bastion>\n", rdpLocalPort, printable(typed), rdpTypedPort)
	fmt.Fprintf(w, "  connect:   your RDP client to localhost:%d\n", rdpLocalPort)
	if len(fps) == 0 {
		fmt.Fprintf(w, "  certificate: none reported by Lightsail; the bastion will refuse the forward\n")
	}
	for _, fp := range fps {
		fmt.Fprintf(w, "  certificate SHA-256 fingerprint (your client must show this one):\n    %s\n", fp)
	}
	fmt.Fprintf(w, "\n.rdp file (save it as %s.rdp; it holds no password):\n", printable(typed))
	writeRDPFile(w, access.Username)
	return rdpExit(status)
}

// rdpExit is the command's exit status: 0 when a password was handed out.
func rdpExit(status string) int {
	if status == rdpIssued {
		return 0
	}
	return 1
}

// writeRDPFile writes a .rdp file for the forward's local end, for user.
func writeRDPFile(w io.Writer, user string) {
	fmt.Fprintf(w, "full address:s:localhost:%d\n", rdpLocalPort)
	fmt.Fprintf(w, "username:s:%s\n", printable(user))
	fmt.Fprintf(w, "prompt for credentials:i:1\n")
	fmt.Fprintf(w, "negotiate security layer:i:1\n")
	fmt.Fprintf(w, "authentication level:i:2\n")
}
