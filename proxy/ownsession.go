package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"bastion/auth"
	"bastion/upstream"
)

// Commands of the bastion's own session (`ssh bastion COMMAND`).
const (
	cmdList = "list"
	cmdHelp = "help"
)

// entry is one line of the target listing: a target the person may reach
// and the OS users they may log in as there.
type entry struct {
	t       upstream.Target
	osUsers []string
}

// ownSession serves a session channel opened on the bastion itself (`ssh
// bastion`, no target). `ssh bastion list` prints the targets the person
// may reach, with their OS users, as text for scripts. An interactive
// `ssh bastion` (with a pty) shows the same list and lets the person pick a
// target, then splices the session to it as if they had named it.
func (c *conn) ownSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	// Own sessions obey the connection's limits (watchLimits).
	ch = c.trackOwn(ch)
	defer c.untrackOwn(ch)
	var pty *ptyRequest
	for req := range reqs {
		c.touch()
		switch req.Type {
		case reqPTY:
			id := c.srv.currentRules().Auth.Current(c.identity)
			if d := id.Restrictions.Allow(auth.CapPTY, "", false); !d.Allow {
				// As sshd: no pty, the session goes on without one
				// (the listing instead of the menu).
				fmt.Fprintf(ch.Stderr(), "bastion: %s\r\n", d.Reason)
				if req.WantReply {
					// As in the splice: a round trip first, so
					// that ssh -tt writes the reason before it
					// gives up on the session.
					ch.SendRequest(reqKeepalive, true, nil)
					req.Reply(false, nil)
				}
				continue
			}
			var p ptyRequest
			if ssh.Unmarshal(req.Payload, &p) == nil {
				pty = &p
			}
			req.Reply(true, nil)
		case "window-change":
			if pty != nil {
				pty.resize(req.Payload)
			}
		case reqExec:
			var p struct{ Command string }
			ssh.Unmarshal(req.Payload, &p)
			req.Reply(true, nil)
			// A long command (watch) must not leave requests unread.
			go ssh.DiscardRequests(reqs)
			status := c.ownCommand(ch, strings.TrimSpace(p.Command), lineEnd(pty))
			c.endOwnSession(ch, reqs, status)
			return
		case reqShell:
			req.Reply(true, nil)
			if pty == nil {
				status := c.ownCommand(ch, cmdList, "\n")
				c.endOwnSession(ch, reqs, status)
				return
			}
			c.menu(ch, reqs, pty)
			return
		default:
			// env and the like: accepted and ignored.
			if req.WantReply {
				req.Reply(true, nil)
			}
		}
	}
}

// endOwnSession ends the session as sshd does when a command exits:
// exit-status, EOF, then close (RFC 4254 §6.10). It does not wait for the
// client's EOF: a client whose stdin is a terminal sends none until the
// person types Ctrl-D, and would hang on a session that waited for it.
func (c *conn) endOwnSession(ch ssh.Channel, reqs <-chan *ssh.Request, status int) {
	go ssh.DiscardRequests(reqs)
	if _, err := ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{uint32(status)})); err != nil {
		c.log.Debug("own_session_exit_status_failed", zap.Error(err))
	}
	ch.CloseWrite()
	ch.Close()
}

// ownCommand runs a command of the bastion's own session and returns its
// exit status. nl is the line end its messages use.
func (c *conn) ownCommand(ch ssh.Channel, cmd, nl string) int {
	switch cmd {
	case cmdList:
		entries, err := c.listTargets()
		var w io.Writer = ch
		if nl != "\n" {
			w = crlfWriter{ch}
		}
		writeListing(w, entries, false)
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "bastion: some targets could not be listed: %s%s", upstream.PublicMessage(err), nl)
			return 1
		}
		return 0
	case cmdHelp:
		writeHelp(ch, c.identity.User, nl)
		return 0
	case cmdSessions:
		return c.sessionsCommand(ch, nl)
	case cmdWhoami:
		return c.whoamiCommand(ch, nl)
	case cmdLogin:
		return c.loginCommand(ch, nl)
	case cmdLogout:
		return c.logoutCommand(ch, ch.Stderr(), nl)
	case "":
		writeHelp(ch.Stderr(), c.identity.User, nl)
		return 2
	}
	if rest, ok := strings.CutPrefix(cmd, cmdKill+" "); ok {
		return c.killCommand(ch, rest, nl)
	}
	if rest, ok := strings.CutPrefix(cmd, cmdWatch+" "); ok {
		return c.watchCommand(ch, rest, nl)
	}
	if rest, ok := strings.CutPrefix(cmd, cmdRDP); ok && (rest == "" || rest[0] == ' ') {
		return c.rdpCommand(ch, rest, nl)
	}
	fmt.Fprintf(ch.Stderr(), "bastion: unknown command %q; try `list` or `help`%s", cmd, nl)
	return 2
}

// writeHelp writes the own session's help with line ends nl ("\r\n" when
// the person's terminal is raw, as under a pty).
func writeHelp(w io.Writer, user, nl string) {
	fmt.Fprintf(w, "bastion: hello %s. Name a target to reach it:"+nl+
		"  ssh -J <this bastion> ec2-user@web-1"+nl+
		"  ssh -p <port> ec2-user+web-1@<this bastion>"+nl+
		"`ssh <this bastion> list` lists the targets you may reach."+nl+
		"`ssh <this bastion> sessions` lists your live sessions; `kill ID` ends one, `watch ID` shows one."+nl+
		"`ssh <this bastion> rdp NAME` prints a Windows instance's Remote Desktop login (with rdp allowed)."+nl+
		"`ssh <this bastion> whoami` shows who the bastion thinks you are; `login` and `logout` show and drop an SSO login."+nl, user)
}

// listTargets returns the targets the person may reach, sorted, with their
// OS users. Providers that fail are reported in the error; the others'
// targets are still returned.
func (c *conn) listTargets() ([]entry, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	defer cancel()
	all, err := c.srv.Resolver.List(ctx)
	if err != nil {
		c.log.Info("list_failed", zap.Error(err))
	}
	policy := c.srv.currentRules().Policy
	var out []entry
	for _, t := range all {
		tg := target{Target: t}
		if !listable(policy, c.identity, tg.forPolicy()) {
			continue
		}
		if users := listedUsers(t.Provider, policy.OSUsers(c.identity, tg.forPolicy())); len(users) > 0 {
			out = append(out, entry{t: t, osUsers: users})
		}
	}
	return out, err
}

// writeListing writes entries as a table; numbered adds the menu's numbers
// and CRLF line ends for a raw terminal.
func writeListing(w io.Writer, entries []entry, numbered bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	nl := "\n"
	if numbered {
		nl = "\r\n"
		fmt.Fprintf(tw, "#\t")
	}
	fmt.Fprintf(tw, "TARGET\tPROVIDER\tREGION\tOS USERS%s", nl)
	for i, e := range entries {
		if numbered {
			fmt.Fprintf(tw, "%d\t", i+1)
		}
		region := e.t.Region
		if region == "" {
			region = "-"
		}
		// Names come from AWS tags and the like: escaped, so that one
		// cannot add a row or drive the terminal.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s", printable(e.t.Name), printable(e.t.Provider), printable(region),
			printable(strings.Join(e.osUsers, ",")), nl)
	}
	tw.Flush()
}

// crlfWriter writes to w with every "\n" as "\r\n", for a terminal in raw
// mode.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// lineEnd returns the line end for output to a session with pty (nil when
// none was requested): a pty's terminal is raw at the client, so it needs
// "\r\n".
func lineEnd(pty *ptyRequest) string {
	if pty != nil {
		return "\r\n"
	}
	return "\n"
}

// ptyRequest is the payload of a pty-req (RFC 4254 §6.2).
type ptyRequest struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

// resize applies a window-change payload (RFC 4254 §6.7).
func (p *ptyRequest) resize(payload []byte) {
	var w struct{ Cols, Rows, W, H uint32 }
	if ssh.Unmarshal(payload, &w) == nil {
		p.Cols, p.Rows, p.W, p.H = w.Cols, w.Rows, w.W, w.H
	}
}

// applyTo sets t's size to the pty's; a zero width (some clients send
// only pixel sizes) leaves t's default of 80 columns.
func (p *ptyRequest) applyTo(t *term.Terminal) {
	if p.Cols > 0 {
		t.SetSize(int(p.Cols), int(p.Rows))
	}
}

// menu shows the listing on the person's terminal, reads their pick and
// splices the session to it.
func (c *conn) menu(ch ssh.Channel, reqs <-chan *ssh.Request, pty *ptyRequest) {
	entries, err := c.listTargets()
	fmt.Fprintf(ch, "bastion: hello %s. Targets you may reach:\r\n", c.identity.User)
	writeListing(ch, entries, true)
	if err != nil {
		fmt.Fprintf(ch, "(some targets could not be listed: %s)\r\n", upstream.PublicMessage(err))
	}
	if len(entries) == 0 {
		fmt.Fprintf(ch, "bastion: no targets.\r\n")
		c.endOwnSession(ch, reqs, 1)
		return
	}
	// While the person types, requests are answered here (window changes
	// update the pty to open upstream); the splice takes the stream over
	// once a target is picked.
	// The line editor wraps at the pty's width, not its default 80.
	t := term.NewTerminal(ch, "")
	pty.applyTo(t)
	var mu sync.Mutex // protects pty.size while requests are answered
	resize := func(payload []byte) {
		mu.Lock()
		defer mu.Unlock()
		pty.resize(payload)
		pty.applyTo(t)
	}
	stopAnswering := answerRequests(reqs, resize)
	defer func() { stopAnswering() }()

	t.SetPrompt("target number or name, optionally followed by the OS user (empty line quits): ")
	for {
		line, err := t.ReadLine()
		line = strings.TrimSpace(line)
		if err != nil || line == "" {
			stopAnswering()
			c.endOwnSession(ch, reqs, 0)
			return
		}
		e, osUser, msg := pick(entries, line)
		if msg != "" {
			fmt.Fprintf(ch, "bastion: %s\r\n", msg)
			continue
		}
		fmt.Fprintf(ch, "bastion: connecting to %s as %s\r\n", printable(e.t.Name), osUser)
		stopAnswering()
		if c.menuLink(ch, reqs, pty, e.t.String(), osUser) {
			return
		}
		stopAnswering = answerRequests(reqs, resize)
	}
}

// answerRequests answers the channel requests of reqs, passing window
// changes' payloads to resize and refusing the rest, until the returned
// stop is called (it waits for the goroutine; calling it again is a no-op).
func answerRequests(reqs <-chan *ssh.Request, resize func([]byte)) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case req, ok := <-reqs:
				if !ok {
					return
				}
				if req.Type == "window-change" {
					resize(req.Payload)
				}
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(quit)
		<-done
	})
}

// pick parses the person's menu choice: "N", "NAME", "N USER", "NAME USER"
// or "USER@NAME". Without a user, the one plain (non-pattern) OS user the
// policies allow is taken. It returns the entry and OS user picked, or a
// message for the person instead: for a line without a target (empty,
// blank, "@"), an unknown one or an invalid user. What the person typed is
// escaped (printable) in the message.
func pick(entries []entry, line string) (entry, string, string) {
	var which, osUser string
	if u, h, ok := strings.Cut(line, "@"); ok {
		which, osUser = h, u
	} else if f := strings.Fields(line); len(f) > 0 {
		which = f[0]
		if len(f) > 1 {
			osUser = f[1]
		}
	}
	if which == "" {
		return entry{}, "", "type a target number or name"
	}
	var e *entry
	if n, err := strconv.Atoi(which); err == nil {
		if n < 1 || n > len(entries) {
			return entry{}, "", fmt.Sprintf("no target number %d", n)
		}
		e = &entries[n-1]
	} else {
		for i := range entries {
			if entries[i].t.Name == which || entries[i].t.String() == which {
				e = &entries[i]
				break
			}
		}
		if e == nil {
			return entry{}, "", fmt.Sprintf("%s is not in the list", printable(which))
		}
	}
	if osUser == "" {
		var plain []string
		for _, u := range e.osUsers {
			if !strings.ContainsAny(u, "*?[") {
				plain = append(plain, u)
			}
		}
		if len(plain) != 1 {
			return entry{}, "", fmt.Sprintf("name the OS user for %s, as in: %s ec2-user", printable(e.t.Name), printable(which))
		}
		osUser = plain[0]
	}
	if !validOSUser(osUser) {
		return entry{}, "", fmt.Sprintf("%q is not a user name", osUser)
	}
	return *e, osUser, ""
}

// validOSUser reports whether s can be an OS user name: at most 64 bytes,
// beginning with a letter, digit or '_', without blanks, '/', ':' or '@',
// and printable (no control characters, valid UTF-8).
func validOSUser(s string) bool {
	if s == "" || len(s) > 64 || printable(s) != s {
		return false
	}
	ok, _ := path.Match("[a-zA-Z0-9_]*", s[:1])
	return ok && !strings.ContainsAny(s, " \t/:@")
}

// menuLink connects the menu's session to the picked target: it opens a
// session on the instance, with the person's pty, starts a shell and
// splices the two channels. It reports false, after telling the person why,
// when the target cannot be reached (the menu then asks again).
func (c *conn) menuLink(ch ssh.Channel, reqs <-chan *ssh.Request, pty *ptyRequest, typed, osUser string) bool {
	t, err := c.resolve(typed)
	if err != nil {
		fmt.Fprintf(ch, "bastion: %s: %s\r\n", printable(typed), publicMessage(err))
		return false
	}
	up, l, err := c.connectUpstream(t, osUser, "menu")
	if err != nil {
		fmt.Fprintf(ch, "bastion: %s: %s\r\n", printable(typed), publicMessage(err))
		return false
	}
	// The instance opens nothing towards a menu session but may send
	// global requests; refuse and discard them.
	go func() {
		for nc := range up.chans {
			nc.Reject(ssh.Prohibited, "not available")
		}
	}()
	go ssh.DiscardRequests(up.reqs)
	defer up.conn.Close()

	uch, ureqs, err := up.conn.OpenChannel(chanSession, nil)
	if err != nil {
		fmt.Fprintf(ch, "bastion: %s: the instance refused a session\r\n", printable(typed))
		l.cancel(nil)
		return false
	}
	ch = personSide(ch)
	obs := l.observe(fromPerson, chanSession, nil, ch)
	for _, r := range []*ssh.Request{
		{Type: "pty-req", WantReply: true, Payload: ssh.Marshal(*pty)},
		{Type: reqShell, WantReply: true},
	} {
		if ok, msg := l.allowRequest(fromPerson, chanSession, r); !ok {
			fmt.Fprintf(ch, "%s\r\n", msg)
			uch.Close()
			l.cancel(nil)
			return false
		}
		if msg := obs.request(fromPerson, r); msg != "" {
			fmt.Fprintf(ch, "%s\r\n", msg)
			uch.Close()
			l.cancel(nil)
			return false
		}
		if ok, err := uch.SendRequest(r.Type, r.WantReply, r.Payload); err != nil || !ok {
			fmt.Fprintf(ch, "bastion: %s: the instance refused %s\r\n", printable(typed), r.Type)
			uch.Close()
			l.cancel(nil)
			return false
		}
	}
	c.runLink(l, func() {
		stop := context.AfterFunc(l.ctx, func() { ch.Close(); uch.Close() })
		defer stop()
		(&channelSplice{typ: chanSession, g: l, obs: obs, log: l.logger()}).pipe(ch, reqs, uch, ureqs)
	})
	return true
}
