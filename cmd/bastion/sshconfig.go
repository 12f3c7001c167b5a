package main

import (
	"io"
)

func cmdSSHConfig(args []string, stdout io.Writer) error { return usageError{"not yet"} }
