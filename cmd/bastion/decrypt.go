package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"filippo.io/age"

	"bastion/audit/recording"
)

// cmdAuditDecrypt writes the plaintext of an encrypted recording to stdout
// or to the -o file.
func cmdAuditDecrypt(args []string, stdout io.Writer) error {
	fs := newFlags("audit", stdout)
	identity, output := addDecryptFlags(fs)
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
	if *identity == "" {
		return usageError{"--identity is required: the age identity file of one of audit.recordings_recipients"}
	}
	if len(files) != 1 {
		return usageError{"give one recording to decrypt"}
	}
	ids, err := readIdentities(*identity)
	if err != nil {
		return err
	}
	name := files[0]
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("opening recording: %w", err)
	}
	defer f.Close()
	plain, err := recording.Decrypt(f, ids...)
	if err != nil {
		if errors.Is(err, recording.ErrWrongIdentity) {
			return fmt.Errorf("%s: no identity in %s is a recipient of this recording", name, *identity)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	out, dest := stdout, "standard output"
	var of *os.File
	if *output != "" && *output != "-" {
		// The plaintext is as sensitive as the recording: only its
		// owner reads it, and an existing file is not overwritten.
		of, err = os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("creating output: %w", err)
		}
		defer of.Close()
		out, dest = of, *output
	}
	n, err := io.Copy(destWriter{out}, plain)
	if err != nil {
		var we writeError
		if errors.As(err, &we) {
			return fmt.Errorf("writing %s: %w", dest, we.err)
		}
		return fmt.Errorf("%s: %w (the first %d bytes, which decrypted, were written to %s)", name, err, n, dest)
	}
	if of != nil {
		if err := of.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", dest, err)
		}
	}
	return nil
}

// destWriter is the destination of the decrypted recording; it marks its
// errors as writeError, to tell them from the recording's.
type destWriter struct{ w io.Writer }

func (d destWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}

// writeError is an error of writing the decrypted recording out.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

// readIdentities reads an age identity file, as age-keygen writes it.
func readIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading --identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		// age's error may quote the file's lines, secret keys included.
		return nil, fmt.Errorf("--identity %s is not an age identity file (AGE-SECRET-KEY-1… lines, as age-keygen writes)", path)
	}
	return ids, nil
}

// addDecryptFlags defines the flags of `audit decrypt`.
func addDecryptFlags(fs *flag.FlagSet) (identity, output *string) {
	identity = fs.String("identity", "", "(decrypt) the age identity `file` (age-keygen's output) of one of audit.recordings_recipients")
	output = fs.String("o", "", "(decrypt) write the decrypted recording to this new `file` (mode 0600) instead of standard output")
	return identity, output
}
