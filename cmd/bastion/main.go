// Command bastion is an SSH bastion for AWS: people reach private Lightsail
// and EC2 instances with their own keys and plain OpenSSH, through one
// audited jump host. See README.md and docs/DESIGN.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"bastion/config"
)

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
		err = cmdServe(ctx, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "check-config":
		err = cmdCheckConfig(ctx, rest, stdout)
	case "ssh-config":
		err = cmdSSHConfig(ctx, rest, stdout, stderr)
	case "fleet":
		err = cmdFleet(ctx, rest, stdout)
	case "audit":
		err = cmdAudit(rest, stdout)
	case "version", "--version", "-v":
		err = cmdVersion(rest, stdout)
	case "help", "-h", "--help":
		if _, ok := helps[firstArg(rest)]; ok {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
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

// firstArg returns args[0], or "" if there is none.
func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Set at build time where the build has no VCS information (the Docker
// image: .git is not in its context), with
// -ldflags "-X main.buildVersion=v1.2.3 -X main.buildRevision=abc123".
var (
	buildVersion  string
	buildRevision string
)

// cmdVersion prints the module version and the VCS revision.
func cmdVersion(args []string, stdout io.Writer) error {
	fs := newFlags("version", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	v, rev := version()
	fmt.Fprintf(stdout, "bastion %s revision %s %s\n", v, rev, runtime.Version())
	return nil
}

// version returns the module version and the VCS revision (with
// "+modified" for a build from a changed checkout): from -ldflags -X if
// set, else from the build information the go command records, else
// "unknown".
func version() (ver, rev string) {
	ver, rev = "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			ver = v
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && rev != "unknown" {
			rev += "+modified"
		}
	}
	if buildVersion != "" {
		ver = buildVersion
	}
	if buildRevision != "" {
		rev = buildRevision
	}
	return ver, rev
}

// configFlag is the --config flag that serve, check-config and ssh-config
// share.
type configFlag struct{ path *string }

func addConfigFlag(fs *flag.FlagSet) configFlag {
	return configFlag{path: fs.String("config", "", "config file (required)")}
}

// load reads and validates the file, as serve does at start.
func (c configFlag) load() (*config.Config, error) {
	return c.loadWith(config.Options{})
}

// loadWith is load with options (check-config --no-file-checks).
func (c configFlag) loadWith(o config.Options) (*config.Config, error) {
	if *c.path == "" {
		return nil, usageError{"--config is required"}
	}
	cfg, err := config.LoadWith(*c.path, o)
	if err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, nil
}
