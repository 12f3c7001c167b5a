package main

import (
	"fmt"
	"io"
)

// cmdCheckConfig validates a config file the way serve does, for CI
// pipelines and a unit's pre-start: exit 0 and "ok" (after a "warning:"
// line per doubtful but valid setting), or exit 1 with one line per problem.
func cmdCheckConfig(args []string, stdout io.Writer) error {
	fs := newFlags("check-config", stdout)
	cf := addConfigFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d users, %d policies)\n", *cf.path, len(cfg.Users), len(cfg.Policies))
	return nil
}
