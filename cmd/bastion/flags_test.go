package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestFlagsUnit checks the command line as main reads it: which command
// runs, the exit code (0 done or help, 1 failed, 2 a mistake in the command
// line), and that a mistake gets one line on stderr, naming the command
// and quoting what was typed with its control characters escaped. No case
// reaches a command's work: each stops at its flags or its --config.
func TestFlagsUnit(t *testing.T) {
	ok := writeConfig(t, "host_key: host_key\npolicies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\n")
	huge := strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		args []string
		code int
		// out and errOut must be held by stdout and stderr; "-" means the
		// stream must be empty.
		out, errOut string
	}{
		{name: "nothing", args: nil, code: 2, out: "-", errOut: "usage: bastion <command>"},
		{name: "empty command", args: []string{""}, code: 2, out: "-", errOut: `bastion: unknown command ""`},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, out: "-", errOut: `unknown command "frobnicate"`},
		{name: "command in capitals", args: []string{"SERVE"}, code: 2, out: "-", errOut: `unknown command "SERVE"`},
		{name: "command with an escape", args: []string{"serve\x1b[2J"}, code: 2, out: "-", errOut: `unknown command "serve\x1b[2J"`},
		{name: "command with a newline", args: []string{"serve\nlevel=error"}, code: 2, out: "-", errOut: `unknown command "serve\nlevel=error"`},
		{name: "huge command", args: []string{huge}, code: 2, out: "-", errOut: "unknown command"},
		{name: "flag as command", args: []string{"--config", ok}, code: 2, out: "-", errOut: `unknown command "--config"`},
		{name: "serve without config", args: []string{"serve"}, code: 2, out: "-", errOut: "bastion serve: --config is required\n"},
		{name: "check-config without config", args: []string{"check-config"}, code: 2, out: "-", errOut: "bastion check-config: --config is required\n"},
		{name: "ssh-config without config", args: []string{"ssh-config"}, code: 2, out: "-", errOut: "bastion ssh-config: --config is required\n"},
		{name: "empty config", args: []string{"check-config", "--config="}, code: 2, out: "-", errOut: "--config is required"},
		{name: "config without value", args: []string{"serve", "--config"}, code: 2, out: "-", errOut: "flag needs an argument: -config (see bastion serve --help)"},
		{name: "unknown flag", args: []string{"serve", "--bogus"}, code: 2, out: "-", errOut: "flag provided but not defined: -bogus (see bastion serve --help)"},
		{name: "unknown flag with an escape", args: []string{"demo", "--\x1b[2J"}, code: 2, out: "-", errOut: `flag provided but not defined: -\x1b[2J (see bastion demo --help)`},
		{name: "triple dash", args: []string{"check-config", "---config", ok}, code: 2, out: "-", errOut: "bad flag syntax: ---config"},
		{name: "bad boolean", args: []string{"check-config", "--no-file-checks=maybe", "--config", ok}, code: 2, out: "-", errOut: `invalid boolean value "maybe" for -no-file-checks`},
		{name: "argument after the flags", args: []string{"check-config", "--config", ok, "extra"}, code: 2, out: "-", errOut: `unexpected argument "extra" (see bastion check-config --help)`},
		{name: "argument with an escape", args: []string{"serve", "--config", ok, "\x1b]0;x\x07"}, code: 2, out: "-", errOut: `unexpected argument "\x1b]0;x\a"`},
		{name: "flags after a double dash", args: []string{"check-config", "--", "--config", ok}, code: 2, out: "-", errOut: `unexpected argument "--config"`},
		{name: "argument before the flags", args: []string{"check-config", "extra", "--config", ok}, code: 2, out: "-", errOut: `unexpected argument "extra"`},
		{name: "version with an argument", args: []string{"version", "now"}, code: 2, out: "-", errOut: `bastion version: unexpected argument "now"`},
		{name: "version with a flag", args: []string{"version", "--short"}, code: 2, out: "-", errOut: "flag provided but not defined: -short"},
		{name: "missing config file", args: []string{"check-config", "--config", "/nonexistent/config.yaml"}, code: 1, out: "-", errOut: "bastion check-config: invalid config:"},
		{name: "config is a folder", args: []string{"check-config", "--config", "/"}, code: 1, out: "-", errOut: "invalid config"},
		{name: "repeated config: the last counts", args: []string{"check-config", "--config", "/nonexistent", "--config", ok}, code: 0, out: ": ok (1 users, 1 policies)", errOut: "-"},
		{name: "single dash flags", args: []string{"check-config", "-no-file-checks", "-config", ok}, code: 0, out: "ok", errOut: "-"},
		{name: "flag with equals", args: []string{"check-config", "--config=" + ok}, code: 0, out: "ok", errOut: "-"},
		{name: "help", args: []string{"help"}, code: 0, out: "usage: bastion <command>", errOut: "-"},
		{name: "dash h", args: []string{"-h"}, code: 0, out: "commands:", errOut: "-"},
		{name: "help for a command", args: []string{"help", "check-config"}, code: 0, out: "usage: bastion check-config", errOut: "-"},
		{name: "help for an unknown command", args: []string{"help", "nosuch"}, code: 0, out: "usage: bastion <command>", errOut: "-"},
		{name: "help for help", args: []string{"help", "help"}, code: 0, out: "usage: bastion <command>", errOut: "-"},
		{name: "help for an empty command", args: []string{"help", ""}, code: 0, out: "usage: bastion <command>", errOut: "-"},
		{name: "command dash h", args: []string{"serve", "-h"}, code: 0, out: "usage: bastion serve --config FILE", errOut: "-"},
		{name: "help after a flag", args: []string{"check-config", "--config", ok, "--help"}, code: 0, out: "usage: bastion check-config", errOut: "-"},
		{name: "help after an argument", args: []string{"check-config", "extra", "--help"}, code: 2, out: "-", errOut: `unexpected argument "extra"`},
		{name: "version flag", args: []string{"--version"}, code: 0, out: "bastion ", errOut: "-"},
		{name: "dash v", args: []string{"-v"}, code: 0, out: " revision ", errOut: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit: got %d, want %d (stderr %.200q)", code, tc.code, errOut)
			}
			for _, s := range []struct{ stream, got, want string }{{"stdout", out, tc.out}, {"stderr", errOut, tc.errOut}} {
				switch {
				case s.want == "-" && s.got != "":
					t.Errorf("%s: got %.200q, want nothing", s.stream, s.got)
				case s.want != "-" && !strings.Contains(s.got, s.want):
					t.Errorf("%s: got %.300q, want it to hold %q", s.stream, s.got, s.want)
				}
			}
			if tc.code == 2 && tc.args != nil && strings.Count(strings.TrimSuffix(errOut, "\n"), "\n") > 0 && !strings.HasPrefix(errOut, "bastion: unknown command") {
				t.Errorf("stderr: got %d lines, want one: %.300q", strings.Count(errOut, "\n"), errOut)
			}
			if strings.ContainsAny(errOut, "\x1b\x07") {
				t.Errorf("stderr holds a raw control character: %.200q", errOut)
			}
		})
	}
}

// TestParseFlagsUnit checks parseFlags alone: --help prints the help once
// and is flag.ErrHelp, any other mistake is a usageError naming the flag
// set, and nothing is printed for a mistake.
func TestParseFlagsUnit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		// err is part of the usage error; "" means none, "help" ErrHelp.
		err string
	}{
		{name: "none", args: nil},
		{name: "empty strings", args: []string{""}, err: `unexpected argument "" (see bastion check-config --help)`},
		{name: "value", args: []string{"--config", "x"}},
		{name: "repeated", args: []string{"--config", "x", "--config", "y", "-config=z"}},
		{name: "help", args: []string{"--help"}, err: "help"},
		{name: "help twice", args: []string{"-help", "--help"}, err: "help"},
		{name: "unknown", args: []string{"-x"}, err: "flag provided but not defined: -x (see bastion check-config --help)"},
		{name: "lone dash", args: []string{"-"}, err: `unexpected argument "-"`},
		{name: "double dash only", args: []string{"--"}},
		{name: "NUL in a flag", args: []string{"--con\x00fig", "x"}, err: `flag provided but not defined: -con\x00fig`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var help strings.Builder
			fs := newFlags("check-config", &help)
			cf := addConfigFlag(fs)
			err := parseFlags(fs, tc.args)
			var ue usageError
			switch {
			case tc.err == "":
				if err != nil || help.Len() != 0 {
					t.Errorf("got %v and %d bytes of help, want nothing", err, help.Len())
				}
			case tc.err == "help":
				if !errors.Is(err, flag.ErrHelp) || strings.Count(help.String(), "usage: bastion check-config") != 1 {
					t.Errorf("got %v and help %.100q, want flag.ErrHelp and the help once", err, help.String())
				}
			case !errors.As(err, &ue) || !strings.Contains(ue.msg, tc.err) || help.Len() != 0:
				t.Errorf("got %v and %d bytes of help, want a usage error holding %q and no help", err, help.Len(), tc.err)
			}
			if errors.As(err, &ue) && strings.ContainsFunc(ue.msg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Errorf("usage error %q holds a raw control character", ue.msg)
			}
			if tc.name == "repeated" && *cf.path != "z" {
				t.Errorf("--config: got %q, want the last one, z", *cf.path)
			}
		})
	}
	var ue usageError
	if cfg, err := (configFlag{path: new(string)}).load(); cfg != nil || !errors.As(err, &ue) {
		t.Errorf("load without --config: got %v, %v; want a usage error", cfg, err)
	}
}
