package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"bastion/assemble"
	"bastion/fleet"
)

// fleetInitWait bounds `bastion fleet init`: DynamoDB makes a table active
// within seconds to a minute.
const fleetInitWait = 3 * time.Minute

// cmdFleet runs `bastion fleet init --config FILE`: it creates the fleet
// table the config names if it is missing, waits until it is active and
// turns on its time to live. It is idempotent.
func cmdFleet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("fleet", stdout)
	if len(args) > 0 && args[0] != "init" && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		return usageError{fmt.Sprintf("unknown fleet command %q; the one there is: init", escapeControl(args[0]))}
	}
	if len(args) > 0 && args[0] == "init" {
		args = args[1:]
	} else if len(args) == 0 {
		return usageError{"missing the fleet command: init"}
	}
	cf := addConfigFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	st, err := assemble.FleetStore(ctx, cfg, assemble.Options{})
	if err != nil {
		return err
	}
	created, err := st.Init(ctx, fleetInitWait)
	switch {
	case errors.Is(err, fleet.ErrNoTTL):
		fmt.Fprintf(stdout, "warning: %v\n", err)
	case err != nil:
		return err
	}
	if created {
		fmt.Fprintf(stdout, "created table %s; it is active\n", st.Table)
	} else {
		fmt.Fprintf(stdout, "table %s exists and is active\n", st.Table)
	}
	return nil
}
