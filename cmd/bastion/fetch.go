package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"bastion/assemble"
	"bastion/audit/recording"
)

// fetchTimeout bounds `bastion audit fetch` as a whole.
const fetchTimeout = 10 * time.Minute

// cmdAuditFetch writes a recording from the audit.s3 bucket to standard
// output or -o, reassembling it from its pieces when the bastion stopped
// before the recording finished.
func cmdAuditFetch(args []string, stdout io.Writer) error {
	fs := newFlags("audit", stdout)
	cf := addConfigFlag(fs)
	output := fs.String("o", "", "(fetch) write the recording to this new `file` (mode 0600) instead of standard output")
	var names []string
	for {
		if err := parseFlagsAllowArgs(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) != 1 || names[0] == "" || path.Base(names[0]) != names[0] {
		return usageError{"give one recording name to fetch, such as 20261203T101500Z-c1-0.cast"}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	client, err := assemble.RecordingsClient(ctx, cfg, assemble.Options{})
	if err != nil {
		return err
	}
	out := stdout
	var of *os.File
	if *output != "" && *output != "-" {
		of, err = os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("creating output: %w", err)
		}
		defer of.Close()
		out = of
	}
	key := cfg.Audit.S3.Prefix + names[0]
	n, err := recording.Fetch(ctx, client, cfg.Audit.S3.Bucket, key, out)
	if n > 0 {
		fmt.Fprintf(os.Stderr, "bastion: s3://%s/%s is missing (its session was live when its bastion stopped); reassembled from %d pieces\n", cfg.Audit.S3.Bucket, key, n)
	}
	if err != nil {
		return err
	}
	if of != nil {
		if err := of.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", *output, err)
		}
	}
	return nil
}
