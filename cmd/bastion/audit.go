package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"bastion/audit"
)

// errNotVerified makes `bastion audit verify` exit 1 after its report.
var errNotVerified = errors.New("the audit log does not verify")

// cmdAudit runs `bastion audit pubkey|verify|decrypt`.
func cmdAudit(args []string, stdout io.Writer) error {
	sub := firstArg(args)
	switch sub {
	case "pubkey":
		return cmdAuditPubkey(args[1:], stdout)
	case "verify":
		return cmdAuditVerify(args[1:], stdout)
	case "decrypt":
		return cmdAuditDecrypt(args[1:], stdout)
	case "-h", "--help", "-help":
		fs := newFlags("audit", stdout)
		addConfigFlag(fs)
		addVerifyFlags(fs)
		addDecryptFlags(fs)
		writeHelp(stdout, "audit", fs)
		return flag.ErrHelp
	case "":
		return usageError{"missing the audit command: pubkey, verify or decrypt"}
	}
	return usageError{fmt.Sprintf("unknown audit command %q; the ones there are: pubkey, verify, decrypt", escapeControl(sub))}
}

// cmdAuditPubkey prints the public half of audit.signing_key.
func cmdAuditPubkey(args []string, stdout io.Writer) error {
	fs := newFlags("audit", stdout)
	cf := addConfigFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.Audit.SigningKey == "" {
		return errors.New("the config sets no audit.signing_key")
	}
	k, err := audit.LoadSigningKey(cfg.Audit.SigningKey, false)
	if err != nil {
		return fmt.Errorf("%w (serve creates the key at its first start)", err)
	}
	fmt.Fprintln(stdout, audit.PublicKeyText(k.Public().(ed25519.PublicKey)))
	return nil
}

// cmdAuditVerify checks audit files as one chain and prints the report;
// files and flags may come in any order.
func cmdAuditVerify(args []string, stdout io.Writer) error {
	fs := newFlags("audit", stdout)
	pubkey, recordings := addVerifyFlags(fs)
	var files []string
	for {
		if err := parseFlagsAllowArgs(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 {
		return usageError{"give the audit files to verify, oldest first"}
	}
	opt := audit.VerifyOptions{Recordings: *recordings}
	if *pubkey != "" {
		text := *pubkey
		if !strings.HasPrefix(text, "ssh-") {
			data, err := os.ReadFile(text)
			if err != nil {
				return fmt.Errorf("reading --pubkey: %w", err)
			}
			text = string(data)
		}
		k, err := audit.ParsePublicKey(text)
		if err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
		opt.PublicKey = k
	}
	rep, err := audit.Verify(files, opt)
	if rep != nil {
		rep.WriteSummary(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return errNotVerified
	}
	return nil
}

// addVerifyFlags defines the flags of `audit verify`.
func addVerifyFlags(fs *flag.FlagSet) (pubkey, recordings *string) {
	pubkey = fs.String("pubkey", "", "(verify) the bastion's audit public `key` as `bastion audit pubkey` prints it, or a file holding it")
	recordings = fs.String("recordings", "", "(verify) a `folder` of recordings to check against their recording_sealed manifests")
	return pubkey, recordings
}

// parseFlagsAllowArgs is parseFlags that leaves arguments after the flags
// for the caller.
func parseFlagsAllowArgs(fs *flag.FlagSet, args []string) error {
	help := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = help
	if err == flag.ErrHelp {
		help()
		return err
	}
	if err != nil {
		return usageError{fmt.Sprintf("%s (see %s --help)", escapeControl(err.Error()), fs.Name())}
	}
	return nil
}
