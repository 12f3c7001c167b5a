package main

import (
	"fmt"
	"io"

	"bastion/config"
)

// cmdCheckConfig validates a config file the way serve does, for CI
// pipelines and a unit's pre-start: exit 0 and "ok", or exit 1 with one line
// per problem.
func cmdCheckConfig(args []string, stdout io.Writer) error {
	fs := newFlags("check-config", stdout)
	path := fs.String("config", "", "config file (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"--config is required"}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("invalid config:\n%w", err)
	}
	fmt.Fprintf(stdout, "%s: ok (%d users, %d policies)\n", *path, len(cfg.Users), len(cfg.Policies))
	return nil
}
