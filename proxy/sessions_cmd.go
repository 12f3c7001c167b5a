package proxy

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/fleet"
)

// Own-session commands on live links.
const (
	cmdSessions = "sessions"
	cmdKill     = "kill"
)

// killRefusal is what a person is told for a kill of a link that does not
// exist and for one they may not end alike, so that ids cannot be probed.
const killRefusal = "no such session of yours"

// controlsSessions reports whether the person is in one of the
// session_control groups, who list and end everyone's links.
func (c *conn) controlsSessions() bool {
	groups := c.srv.currentRules().SessionControl
	id := c.srv.currentRules().Auth.Current(c.identity)
	for _, g := range id.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// visibleLinks returns the live links the person may see, of every
// replica when there is a fleet store: their own, or all of them for
// session_control groups, oldest first. With the store unreachable, it
// returns this replica's and says so in note.
func (c *conn) visibleLinks() (links []fleet.Link, note string) {
	all := c.srv.localLinks()
	if dir := c.srv.Fleet.Directory; dir != nil {
		ctx, cancel := context.WithTimeout(c.ctx, fleetCallTimeout)
		fleetLinks, err := dir.List(ctx)
		cancel()
		if err != nil {
			c.srv.fleetFailed("list", err)
			note = "the fleet store is unreachable: only this replica's sessions are listed"
		}
		// This replica's own links come from memory: the store may
		// still hold some that just ended.
		me := c.srv.replicaName()
		for _, l := range fleetLinks {
			if l.Replica != me {
				all = append(all, l)
			}
		}
	}
	ctl := c.controlsSessions()
	out := all[:0]
	for _, l := range all {
		if ctl || l.User == c.identity.User {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, note
}

// visibleLink returns the live link id if the person may see it.
func (c *conn) visibleLink(id string) (fleet.Link, bool) {
	if id == "" || len(id) > maxLinkIDLen {
		return fleet.Link{}, false
	}
	if e := c.srv.localEntry(id); e != nil {
		l := c.srv.fleetLink(e)
		return l, l.User == c.identity.User || c.controlsSessions()
	}
	if c.srv.Fleet.Directory == nil {
		return fleet.Link{}, false
	}
	ctx, cancel := context.WithTimeout(c.ctx, fleetCallTimeout)
	l, ok, err := c.srv.Fleet.Directory.Lookup(ctx, id)
	cancel()
	if err != nil {
		c.srv.fleetFailed("list", err)
		return fleet.Link{}, false
	}
	// This replica's own links come from memory (above): an entry of
	// this replica's in the store is a link that just ended.
	if !ok || l.Replica == c.srv.replicaName() {
		return fleet.Link{}, false
	}
	return l, l.User == c.identity.User || c.controlsSessions()
}

// sessionsCommand serves `ssh bastion sessions`: a table of the live
// links the person may see.
func (c *conn) sessionsCommand(ch ssh.Channel, nl string) int {
	links, note := c.visibleLinks()
	var w io.Writer = ch
	if nl != "\n" {
		w = crlfWriter{ch}
	}
	writeSessions(w, links, time.Now())
	c.audit(audit.Event{Type: audit.TypeSessionsListed, By: audit.Clip(c.identity.User), Count: len(links)})
	if note != "" {
		fmt.Fprintf(ch.Stderr(), "bastion: %s%s", note, nl)
	}
	return 0
}

// writeSessions writes links as a table, every field escaped.
func writeSessions(w io.Writer, links []fleet.Link, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTARGET\tOS USER\tREPLICA\tSTART\tIDLE\tIN\tOUT\tPTY")
	for _, l := range links {
		pty := "-"
		if l.PTY {
			pty = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", printable(l.ID), printable(l.User), printable(l.Target),
			printable(l.OSUser), printable(l.Replica), l.Start.UTC().Format(time.RFC3339),
			now.Sub(l.LastActive).Truncate(time.Second), l.BytesIn, l.BytesOut, pty)
	}
	tw.Flush()
}

// killCommand serves `ssh bastion kill ID`: it ends the link ID, if it is
// the person's or they are in a session_control group, with a one-line
// reason on the link's sessions. A link on another replica is ended by
// that replica, which polls the fleet store for kill requests.
func (c *conn) killCommand(ch ssh.Channel, arg, nl string) int {
	id := strings.TrimSpace(arg)
	l, ok := c.visibleLink(id)
	if !ok {
		c.audit(audit.Event{Type: audit.TypeKillRefused, LinkID: audit.Clip(id), By: audit.Clip(c.identity.User), Reason: killRefusal})
		fmt.Fprintf(ch.Stderr(), "bastion: %s%s", killRefusal, nl)
		return 1
	}
	by := "ended by " + c.identity.User
	if l.User != c.identity.User {
		by = "ended by session_control user " + c.identity.User
	}
	k := fleet.Kill{LinkID: l.ID, By: c.identity.User, Reason: by, At: time.Now()}
	if e := c.srv.localEntry(l.ID); e != nil {
		// The victim's link is ended in the background: endWith gives
		// the message up to a second to leave, and this command answers
		// at once.
		c.srv.bg.Go(func() { c.srv.endKilled(e, k) })
		fmt.Fprintf(ch, "bastion: ending %s%s", printable(l.ID), nl)
		return 0
	}
	ctx, cancel := context.WithTimeout(c.ctx, fleetCallTimeout)
	err := c.srv.Fleet.Directory.RequestKill(ctx, k)
	cancel()
	if err != nil {
		c.srv.fleetFailed("request_kill", err)
		c.audit(audit.Event{Type: audit.TypeKillRefused, LinkID: l.ID, By: audit.Clip(c.identity.User), Reason: "fleet store unreachable"})
		fmt.Fprintf(ch.Stderr(), "bastion: the fleet store is unreachable; %s runs on replica %s, which could not be asked to end it%s", printable(l.ID), printable(l.Replica), nl)
		return 1
	}
	c.audit(audit.Event{Type: audit.TypeKillRequested, LinkID: l.ID, By: audit.Clip(c.identity.User), Reason: audit.Clip("held by replica " + l.Replica)})
	fmt.Fprintf(ch, "bastion: ending %s (on replica %s)%s", printable(l.ID), printable(l.Replica), nl)
	return 0
}
