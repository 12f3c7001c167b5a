package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// usage is `bastion --help`.
const usage = `usage: bastion <command> [flags]

An SSH bastion for AWS: people reach private Lightsail and EC2 instances
with their own keys and plain OpenSSH (ssh -J bastion ec2-user@web-1).

commands:
  serve --config FILE         run the bastion
  demo                        run a bastion in front of a simulated AWS account
  check-config --config FILE  validate a config file as serve does (exit 1 on errors)
  ssh-config --config FILE    print (or --write) a person's ~/.ssh/config stanza and known_hosts lines
  fleet init --config FILE    create the fleet's DynamoDB table if missing (idempotent)
  audit pubkey --config FILE  print the public key that signs the audit log's checkpoints
  audit verify FILE...        check audit files' hash chain and signed checkpoints (exit 1 if broken)
  audit decrypt RECORDING     decrypt an encrypted (.cast.age) recording with --identity FILE
  version                     print the version and VCS revision

"bastion <command> --help" shows a command's flags and an example.

examples:
  go run ./cmd/bastion demo
  bastion check-config --config /etc/bastion/config.yaml
  bastion serve --config /etc/bastion/config.yaml
`

// commandHelp is the help text of one subcommand around its flags.
type commandHelp struct {
	// synopsis is the usage line after "bastion ".
	synopsis string
	// about says what the command does, in a paragraph or more.
	about string
	// example holds ready-to-run command lines.
	example string
}

// helps holds each subcommand's help.
var helps = map[string]commandHelp{
	"serve": {
		synopsis: "serve --config FILE [--dev-log]",
		about: `Runs the bastion: listens for SSH (listen), serves /metrics, /healthz and
/readyz on admin_listen, and writes the audit log. The config is checked
first, as check-config does; a bad one stops the start with one line per
problem.

signals:
  SIGHUP            reload users, groups, policies, revoked keys and limits
                    (an invalid file is refused and the old config kept),
                    and reopen the audit log
  SIGTERM, SIGINT   drain: stop accepting, tell live sessions, let them run
                    until limits.drain_timeout, then exit 0
  second SIGTERM or SIGINT
                    exit at once, ending the drain
  SIGUSR1           reopen the audit log (after logrotate moved it)`,
		example: `bastion serve --config /etc/bastion/config.yaml
kill -HUP $(pidof bastion)      # reload`,
	},
	"demo": {
		synopsis: "demo [--state DIR] [--listen ADDR] [--dev-log]",
		about: `Runs, in one process, a fake AWS account with simulated Lightsail and EC2
instances (in-process SSH servers running your shell) and a bastion in
front of it, and prints ssh lines to paste. Ctrl-C stops it, and so does
the end of the process that started it (go run).`,
		example: `go run ./cmd/bastion demo
go run ./cmd/bastion demo --listen 127.0.0.1:2223 --state demo2   # a second one`,
	},
	"check-config": {
		synopsis: "check-config --config FILE [--no-file-checks]",
		about: `Validates a config file with the parsers serve runs at start, and prints
"ok" or one line per problem (FILE:LINE: KEY: message), exit 1. Warnings
(a policy group no user has) are printed and do not fail the check.`,
		example: `bastion check-config --config /etc/bastion/config.yaml
go run ./cmd/bastion check-config --no-file-checks --config config.yaml.example`,
	},
	"ssh-config": {
		synopsis: "ssh-config --config FILE [--host HOST[:PORT]] [--user NAME] [--write]",
		about: `Prints what a person's OpenSSH needs: a "Host bastion" stanza with ProxyJump
for the provider suffixes, the bastion's host key, and its host CA as
@cert-authority for the suffixes and the names of the targets the
providers list now (with the bastion's AWS credentials). Run it where the
host keys are. --write appends to ~/.ssh/config and ~/.ssh/known_hosts,
replacing an older line for the same CA: run it again when instances are
added.`,
		example: `bastion ssh-config --config /etc/bastion/config.yaml --host bastion.example.com:22
bastion ssh-config --config config.yaml --host bastion.example.com --user alice --write`,
	},
	"fleet": {
		synopsis: "fleet init --config FILE",
		about: `Creates the DynamoDB table that fleet.dynamodb_table names if it is missing
(on-demand capacity, partition key "pk"), waits until it is active, and
turns on its time to live on "expires". It is idempotent: run it from a
deploy pipeline or by hand, with credentials allowed the table's
DescribeTable, CreateTable and UpdateTimeToLive (deploy/README.md).
AWS_ENDPOINT_URL_DYNAMODB points it at another endpoint.`,
		example: `bastion fleet init --config /etc/bastion/config.yaml`,
	},
	"audit": {
		synopsis: "audit pubkey --config FILE | audit verify FILE... [--pubkey KEY] [--recordings DIR] | audit decrypt --identity FILE RECORDING [-o OUT]",
		about: `pubkey prints the public half of audit.signing_key (authorized_keys form),
for auditors to keep apart from the bastion.

verify checks audit files, given oldest first (rotated .gz files too), as
one hash chain: every line's seq and prev, and every audit_checkpoint's
signature. It exits 0 with a summary when the chain is intact and every
checkpoint verifies, and otherwise names the first line where a line was
removed, added, changed or moved, and exits 1. Events after the last
checkpoint are reported as not yet covered by a signature. --pubkey checks
the signatures against the bastion's key (without it, against the key the
log names); --recordings checks each recording in DIR against its
recording_sealed manifest (size and SHA-256; of the encrypted file, for
a .cast.age recording).

decrypt writes the asciicast of a recording encrypted to
audit.recordings_recipients to standard output, or to the new file OUT
(mode 0600), for asciinema play; age -d -i FILE does the same. A recording
cut short (a crash, a full disk) decrypts up to its cut and then exits 1
saying it is truncated.`,
		example: `bastion audit pubkey --config /etc/bastion/config.yaml > audit.pub
bastion audit verify /var/log/bastion/audit.jsonl.2.gz /var/log/bastion/audit.jsonl.1 /var/log/bastion/audit.jsonl --pubkey audit.pub
bastion audit verify audit.jsonl --pubkey audit.pub --recordings /var/lib/bastion/recordings
bastion audit decrypt --identity auditor.key /var/lib/bastion/recordings/20261203T101500Z-c1-0.cast.age -o session.cast`,
	},
	"version": {
		synopsis: "version",
		about:    `Prints the module version and the VCS revision the binary was built from.`,
		example:  `bastion version`,
	},
}

// newFlags returns a flag set for subcommand name that reports errors
// instead of exiting; --help prints the command's help to out.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bastion "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { writeHelp(out, name, fs) }
	return fs
}

// writeHelp writes the help of subcommand name: usage, what it does, its
// flags and an example.
func writeHelp(w io.Writer, name string, fs *flag.FlagSet) {
	h := helps[name]
	fmt.Fprintf(w, "usage: bastion %s\n\n%s\n", h.synopsis, h.about)
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nflags:\n%s", flags.String())
	}
	fmt.Fprintf(w, "\nexample:\n")
	for _, line := range strings.Split(h.example, "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

// parseFlags parses args: --help prints the help and returns flag.ErrHelp;
// other flag errors become usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package calls Usage on every error; the help is for
	// --help only, a mistake gets one line (run prints the usage error).
	help := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = help
	if err != nil {
		if err == flag.ErrHelp {
			help()
			return err
		}
		// The flag package quotes nothing: a typed flag name goes to the
		// terminal escaped, as the unexpected argument below does.
		return usageError{fmt.Sprintf("%s (see %s --help)", escapeControl(err.Error()), fs.Name())}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (see %s --help)", fs.Arg(0), fs.Name())}
	}
	return nil
}

// escapeControl returns s with each rune that is not printable written as
// strconv quotes it ("\x1b", "\n"), and the rest as it is.
func escapeControl(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
