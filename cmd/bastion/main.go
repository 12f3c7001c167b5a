// Command bastion is an SSH bastion for AWS: people reach private Lightsail
// and EC2 instances with their own keys and plain OpenSSH, through one
// audited jump host. See README.md and DESIGN.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"bastion/config"
)

const usage = `usage: bastion <command> [flags]

commands:
  serve --config FILE         run the bastion
  demo                        run a bastion in front of a simulated AWS account
  check-config --config FILE  validate a config file (exit 1 on errors)
  ssh-config --config FILE    print the ~/.ssh/config stanza and known_hosts line for people
  version                     print the version
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "check-config":
		err = cmdCheckConfig(rest, stdout)
	case "ssh-config":
		err = cmdSSHConfig(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "bastion", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bastion: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "bastion %s: %s\n", cmd, ue.msg)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bastion %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// version returns the module version, or the VCS revision for a build from a
// checkout.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return "devel-" + s.Value
		}
	}
	return "devel"
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bastion "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// configFlag is the --config flag that serve, check-config and ssh-config
// share.
type configFlag struct{ path *string }

func addConfigFlag(fs *flag.FlagSet) configFlag {
	return configFlag{path: fs.String("config", "", "config file (required)")}
}

// load reads and validates the file, as serve does at start.
func (c configFlag) load() (*config.Config, error) {
	if *c.path == "" {
		return nil, usageError{"--config is required"}
	}
	cfg, err := config.Load(*c.path)
	if err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, nil
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
