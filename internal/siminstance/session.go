package siminstance

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Session channel request types (RFC 4254 §6.2–§6.10).
const (
	requestPty          = "pty-req"
	requestWindowChange = "window-change"
	requestEnv          = "env"
	requestShell        = "shell"
	requestExec         = "exec"
	requestSubsystem    = "subsystem"
	requestSignal       = "signal"
	requestExitStatus   = "exit-status"
	requestExitSignal   = "exit-signal"
)

// subsystemSFTP is the only subsystem served.
const subsystemSFTP = "sftp"

// sftpServers are where distributions install OpenSSH's sftp-server: Debian
// and Ubuntu, then Fedora, RHEL and Amazon Linux.
var sftpServers = []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server"}

// errChannelClosed is the cause of the cancellation of a session's context
// once its channel is closed.
var errChannelClosed = errors.New("siminstance: channel closed")

// Payloads of session requests (RFC 4254 §6.2–§6.10).
type (
	ptyRequestMsg struct {
		Term   string
		Cols   uint32
		Rows   uint32
		Width  uint32
		Height uint32
		Modes  string
	}
	windowChangeMsg struct {
		Cols   uint32
		Rows   uint32
		Width  uint32
		Height uint32
	}
	envMsg struct {
		Name  string
		Value string
	}
	execMsg struct {
		Command string
	}
	subsystemMsg struct {
		Name string
	}
	signalMsg struct {
		Signal string
	}
	exitStatusMsg struct {
		Status uint32
	}
	exitSignalMsg struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
)

// winsize is a terminal size in characters and pixels.
type winsize struct {
	rows, cols, width, height uint32
}

// session is one "session" channel. Its fields are used by the goroutine
// running serve only; the process it starts has goroutines of its own.
type session struct {
	c   *conn
	ch  ssh.Channel
	log *zap.Logger

	env   []string     // NAME=value pairs accepted by env requests
	term  string       // TERM from pty-req; "" without a pty
	size  winsize      // terminal size; meaningful only with a pty
	pty   bool         // whether a pty was requested
	proc  *process     // nil until shell, exec or subsystem
	agent *agentSocket // nil unless the client asked for agent forwarding

	// wg counts the agent socket's goroutines.
	wg sync.WaitGroup
}

// handleSession accepts a "session" channel and serves its requests until
// the channel closes, then kills and waits for its process.
func (c *conn) handleSession(ctx context.Context, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		c.log.Debug("accept_failed", zap.Error(err))
		return
	}
	ctx, cancel := context.WithCancelCause(ctx)
	s := &session{c: c, ch: ch, log: c.log.With(zap.String("channel_type", channelSession))}
	for req := range reqs {
		s.handleRequest(ctx, req)
	}
	// reqs is closed: the client closed the channel, or the connection is
	// gone. As with sshd, a process still running is killed.
	cancel(errChannelClosed)
	if s.proc != nil {
		s.proc.wait()
	}
	s.closeAgent()
	s.wg.Wait()
	ch.Close()
}

// handleRequest answers one channel request.
func (s *session) handleRequest(ctx context.Context, req *ssh.Request) {
	switch req.Type {
	case requestPty:
		var msg ptyRequestMsg
		if s.pty || s.proc != nil || ssh.Unmarshal(req.Payload, &msg) != nil {
			s.reply(req, false)
			return
		}
		s.pty = true
		s.term = msg.Term
		s.size = winsize{rows: msg.Rows, cols: msg.Cols, width: msg.Width, height: msg.Height}
		s.reply(req, true)

	case requestWindowChange:
		var msg windowChangeMsg
		if !s.pty || ssh.Unmarshal(req.Payload, &msg) != nil {
			s.reply(req, false)
			return
		}
		s.size = winsize{rows: msg.Rows, cols: msg.Cols, width: msg.Width, height: msg.Height}
		if s.proc != nil {
			if err := s.proc.resize(s.size); err != nil {
				s.log.Debug("resize_failed", zap.Error(err))
				s.reply(req, false)
				return
			}
		}
		s.reply(req, true)

	case requestEnv:
		// Like sshd with "AcceptEnv LANG LC_*": other names are refused.
		var msg envMsg
		if s.proc != nil || ssh.Unmarshal(req.Payload, &msg) != nil || !acceptEnv(msg.Name) {
			s.reply(req, false)
			return
		}
		s.env = append(s.env, msg.Name+"="+msg.Value)
		s.reply(req, true)

	case requestShell:
		s.start(ctx, req, s.shellArgv(), true)

	case requestExec:
		var msg execMsg
		if ssh.Unmarshal(req.Payload, &msg) != nil {
			s.reply(req, false)
			return
		}
		s.start(ctx, req, []string{"/bin/sh", "sh", "-c", msg.Command}, false)

	case requestSubsystem:
		var msg subsystemMsg
		if ssh.Unmarshal(req.Payload, &msg) != nil || msg.Name != subsystemSFTP {
			s.reply(req, false)
			return
		}
		path := ""
		for _, p := range sftpServers {
			if isExecutable(p) {
				path = p
				break
			}
		}
		if path == "" {
			s.log.Info("sftp_server_missing")
			s.reply(req, false)
			return
		}
		s.start(ctx, req, []string{path, "sftp-server"}, false)

	case requestSignal:
		var msg signalMsg
		sig, ok := syscall.Signal(0), false
		if s.proc != nil && ssh.Unmarshal(req.Payload, &msg) == nil {
			sig, ok = sshToSignal[ssh.Signal(msg.Signal)]
		}
		if !ok {
			s.reply(req, false)
			return
		}
		if err := s.proc.signal(sig); err != nil {
			s.log.Debug("signal_failed", zap.Error(err))
			s.reply(req, false)
			return
		}
		s.reply(req, true)

	case requestAgent:
		s.reply(req, s.startAgent(ctx))

	default:
		// x11-req, keepalive@openssh.com, …
		s.reply(req, false)
	}
}

// start runs argv (path, then argv[0], then arguments) as the session's
// process and answers req: true once it has started, false if it could not
// start or the session already has a process. Output is relayed only after
// the reply, so the client sees the success before any data, as from sshd.
func (s *session) start(ctx context.Context, req *ssh.Request, argv []string, shell bool) {
	if s.proc != nil {
		s.reply(req, false)
		return
	}
	spec := processSpec{
		path: argv[0],
		args: argv[1:],
		dir:  s.c.inst.account.home,
		env:  s.environ(shell),
	}
	if s.pty {
		spec.pty = true
		spec.size = s.size
	}
	p, err := startProcess(ctx, s.ch, spec, s.log)
	if err != nil {
		s.log.Info("process_start_failed", zap.String("request_type", req.Type), zap.Error(err))
		s.reply(req, false)
		return
	}
	s.proc = p
	s.log.Info("process_started", zap.String("request_type", req.Type), zap.Bool("pty", s.pty), zap.Int("pid", p.pid()))
	s.reply(req, true)
	p.relay()
}

// shellArgv returns the login shell's path and arguments. bash skips the
// person's profile and rc files, which would replace the prompt that tells
// the simulated instance apart from their own machine.
func (s *session) shellArgv() []string {
	sh := s.c.inst.account.shell
	if strings.HasSuffix(sh, "/bash") {
		return []string{sh, "-bash", "--noprofile", "--norc"}
	}
	return []string{sh, "sh"}
}

// environ returns the environment of the session's process, modelled on a
// login by sshd: the account, the connection, the accepted env requests, and
// for a shell a prompt naming the simulated instance.
func (s *session) environ(shell bool) []string {
	a := s.c.inst.account
	env := []string{
		"HOME=" + a.home,
		"USER=" + a.user,
		"LOGNAME=" + a.user,
		"SHELL=" + a.shell,
		"PATH=" + a.path,
		"BASTION_DEMO_INSTANCE=" + s.c.inst.name,
		"SSH_CONNECTION=" + sshConnection(s.c.sc.RemoteAddr(), s.c.sc.LocalAddr()),
	}
	if s.agent != nil {
		env = append(env, "SSH_AUTH_SOCK="+s.agent.path())
	}
	if s.pty {
		term := s.term
		if term == "" {
			term = "dumb"
		}
		env = append(env, "TERM="+term)
	}
	if shell {
		prompt := promptSafe(s.c.sc.User(), "user") + "@" + promptSafe(s.c.inst.name, "instance")
		if strings.HasSuffix(a.shell, "/bash") {
			env = append(env, `PS1=`+prompt+`:\w\$ `)
		} else {
			env = append(env, "PS1="+prompt+"$ ")
		}
	}
	return append(env, s.env...)
}

// reply answers req if the client wants an answer.
func (s *session) reply(req *ssh.Request, ok bool) {
	if !req.WantReply {
		return
	}
	if err := req.Reply(ok, nil); err != nil {
		s.log.Debug("reply_failed", zap.String("request_type", req.Type), zap.Error(err))
	}
}

// acceptEnv reports whether an env request may set name: LANG and LC_*, as
// with the AcceptEnv line Debian's sshd_config ships.
func acceptEnv(name string) bool {
	return name == "LANG" || strings.HasPrefix(name, "LC_")
}

// sshConnection formats SSH_CONNECTION: client address and port, then server
// address and port.
func sshConnection(remote, local net.Addr) string {
	rh, rp, _ := net.SplitHostPort(remote.String())
	lh, lp, _ := net.SplitHostPort(local.String())
	return rh + " " + rp + " " + lh + " " + lp
}

// promptSafe keeps the characters of s that mean nothing to a shell prompt
// (letters, digits, '.', '_', '-') and replaces the others with '_', so that
// a user or instance name cannot inject prompt escapes or commands. An empty
// result becomes fallback.
func promptSafe(s, fallback string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return fallback
	}
	return string(b)
}
