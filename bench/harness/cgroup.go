package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuGroup is a cgroup holding one jump host and every process it forks,
// whose CPU counter includes processes that have exited, whoever reaped
// them. It replaces the /proc sum for OpenSSH, which missed the CPU of an
// sshd child that outlived its parent (reparented to init, so never added
// to the listener's cutime: the 0.01 s samples of a 256 MiB transfer).
type cpuGroup struct {
	dir string
	// v2 is whether dir is in the unified hierarchy (cpu.stat) rather
	// than cgroup v1's cpuacct (cpuacct.usage).
	v2 bool
}

// cgroupMethod documents the cgroup measurement.
const cgroupMethod = "the CPU counter of a cgroup created for each jump host (cgroup v2 cpu.stat usage_usec, or v1 cpuacct.usage), " +
	"which the jump host's process and every process it forks belong to, exited ones included: nothing is missed whoever reaps a child. " +
	"Read before and after each transfer once the jump host's tree is quiescent. " +
	"Each transfer includes one connection setup, which matters for small --bytes. Upstream sshd and client CPU are not counted."

// newCPUGroup creates a cgroup named name for pid, or returns an error
// when cgroups cannot be written here (no root, no delegation).
func newCPUGroup(name string, pid int) (*cpuGroup, error) {
	leaf := fmt.Sprintf("bastion-bench-%d-%s", os.Getpid(), name)
	candidates := []struct {
		root string
		v2   bool
	}{{"/sys/fs/cgroup", true}, {"/sys/fs/cgroup/cpuacct", false}, {"/sys/fs/cgroup/cpu,cpuacct", false}}
	var errs []string
	for _, c := range candidates {
		if c.v2 {
			if _, err := os.Stat(filepath.Join(c.root, "cgroup.controllers")); err != nil {
				continue
			}
		} else if _, err := os.Stat(filepath.Join(c.root, "cpuacct.usage")); err != nil {
			continue
		}
		g := &cpuGroup{dir: filepath.Join(c.root, leaf), v2: c.v2}
		if err := os.Mkdir(g.dir, 0o755); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			os.Remove(g.dir)
			errs = append(errs, err.Error())
			continue
		}
		if _, err := g.cpu(); err != nil {
			g.close()
			errs = append(errs, err.Error())
			continue
		}
		return g, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no cgroup v2 or v1 cpuacct hierarchy under /sys/fs/cgroup")
	}
	return nil, fmt.Errorf("creating a cgroup: %s", strings.Join(errs, "; "))
}

// cpu returns the CPU time used by the group's processes so far.
func (g *cpuGroup) cpu() (time.Duration, error) {
	if g.v2 {
		b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return time.Duration(us) * time.Microsecond, err
			}
		}
		return 0, fmt.Errorf("%s/cpu.stat has no usage_usec", g.dir)
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(ns), err
}

// close moves the group's processes back to the parent group and removes
// the group.
func (g *cpuGroup) close() {
	if b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs")); err == nil {
		for _, pid := range strings.Fields(string(b)) {
			os.WriteFile(filepath.Join(filepath.Dir(g.dir), "cgroup.procs"), []byte(pid), 0o644)
		}
	}
	os.Remove(g.dir)
}
