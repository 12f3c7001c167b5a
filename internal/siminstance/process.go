package siminstance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// sshToSignal maps the signal names of RFC 4254 §6.10 to signals.
var sshToSignal = map[ssh.Signal]syscall.Signal{
	ssh.SIGABRT: syscall.SIGABRT,
	ssh.SIGALRM: syscall.SIGALRM,
	ssh.SIGFPE:  syscall.SIGFPE,
	ssh.SIGHUP:  syscall.SIGHUP,
	ssh.SIGILL:  syscall.SIGILL,
	ssh.SIGINT:  syscall.SIGINT,
	ssh.SIGKILL: syscall.SIGKILL,
	ssh.SIGPIPE: syscall.SIGPIPE,
	ssh.SIGQUIT: syscall.SIGQUIT,
	ssh.SIGSEGV: syscall.SIGSEGV,
	ssh.SIGTERM: syscall.SIGTERM,
	ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

// signalToSSH is the inverse of sshToSignal.
var signalToSSH = func() map[syscall.Signal]ssh.Signal {
	m := make(map[syscall.Signal]ssh.Signal, len(sshToSignal))
	for name, sig := range sshToSignal {
		m[sig] = name
	}
	return m
}()

// processSpec describes the process of a session.
type processSpec struct {
	path string   // executable
	args []string // argv, argv[0] included
	dir  string
	env  []string
	pty  bool    // run on a new pty rather than pipes
	size winsize // initial pty size
}

// process is the running command of a session and the goroutines relaying
// its I/O over the channel.
//
// Without a pty, the process has three pipes: stdout is sent as channel data,
// stderr as extended data (RFC 4254 §5.2), channel data is written to stdin
// and the client's EOF closes stdin. With a pty, the pty master carries both
// directions. The parent's ends of the pipes and the master are non-blocking,
// so that deadlines can cut off a copier blocked on them.
type process struct {
	cmd *exec.Cmd
	ch  ssh.Channel
	log *zap.Logger

	master *os.File // pty master; nil without a pty
	stdin  *os.File // write end of stdin; nil with a pty; closed by the stdin copier
	stdout *os.File // read end of stdout; nil with a pty
	stderr *os.File // read end of stderr; nil with a pty

	output sync.WaitGroup // output copiers, waited for before exit-status
	all    sync.WaitGroup // every goroutine, waited for by wait
}

// startProcess starts spec. The process is killed, with its process group,
// when ctx is cancelled. Nothing is relayed until relay is called.
func startProcess(ctx context.Context, ch ssh.Channel, spec processSpec, log *zap.Logger) (*process, error) {
	cmd := exec.CommandContext(ctx, spec.path)
	cmd.Args = spec.args
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	// A session of its own: the process group can be killed whole, and
	// the process cannot reach the terminal `bastion demo` runs in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error {
		// After Setsid the process leads its own group.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	p := &process{cmd: cmd, ch: ch, log: log}
	var err error
	if spec.pty {
		err = p.startPty(spec)
	} else {
		err = p.startPipes()
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// startPty starts the command with a new pty as its controlling terminal
// and stdin, stdout and stderr.
func (p *process) startPty(spec processSpec) error {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return fmt.Errorf("allocating pty: %w", err)
	}
	defer tty.Close() // the child has its own copy once started
	master, err := nonblocking(ptmx)
	if err != nil {
		return fmt.Errorf("allocating pty: %w", err)
	}
	if err := setWinsize(master, spec.size); err != nil {
		master.Close()
		return fmt.Errorf("sizing pty: %w", err)
	}
	p.cmd.Env = append(p.cmd.Env, "SSH_TTY="+tty.Name())
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr.Setctty = true // Ctty 0: the child's stdin
	if err := p.cmd.Start(); err != nil {
		master.Close()
		return fmt.Errorf("starting %s: %w", p.cmd.Path, err)
	}
	p.master = master
	return nil
}

// startPipes starts the command with a pipe for each of stdin, stdout and
// stderr.
func (p *process) startPipes() error {
	var files []*os.File // every end, closed on failure
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return fmt.Errorf("creating stdin pipe: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return fmt.Errorf("creating stderr pipe: %w", err)
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, errW
	if err := p.cmd.Start(); err != nil {
		closeAll()
		return fmt.Errorf("starting %s: %w", p.cmd.Path, err)
	}
	// The child's ends live on in the child only.
	inR.Close()
	outW.Close()
	errW.Close()
	p.stdin, p.stdout, p.stderr = inW, outR, errR
	return nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// relay starts copying between the channel and the process, and the
// goroutine that reports the process's exit.
func (p *process) relay() {
	if p.master != nil {
		p.goOutput(p.ch, p.master)
		// The client's EOF cannot be passed through a pty; sshd drops it.
		p.all.Go(func() { _, _ = io.Copy(p.master, p.ch) })
	} else {
		p.goOutput(p.ch, p.stdout)
		p.goOutput(p.ch.Stderr(), p.stderr)
		p.all.Go(func() {
			_, _ = io.Copy(p.stdin, p.ch)
			p.stdin.Close() // EOF from the client: EOF on stdin
		})
	}
	p.all.Go(p.reportExit)
}

// goOutput starts a copier from the process's output src to dst.
func (p *process) goOutput(dst io.Writer, src *os.File) {
	p.output.Add(1)
	p.all.Go(func() {
		defer p.output.Done()
		// A pty master reports the hang-up of the last slave as EIO, and
		// reportExit ends a long drain with a deadline: both are a normal
		// end of output.
		_, _ = io.Copy(dst, src)
	})
}

// reportExit waits for the process to exit and its output to be relayed,
// then sends exit-status or exit-signal, EOF and close, in that order, as
// sshd does (RFC 4254 §6.10). The client may still be sending; a close it
// has not yet seen does not stop it from doing so, and RFC 4254 §5.3 lets
// either side close at any time.
func (p *process) reportExit() {
	err := p.cmd.Wait()
	// Output written before the exit may still sit in the pipe or pty
	// buffer, or a background child may keep it open: relay for at most
	// drainTimeout more.
	deadline := time.Now().Add(drainTimeout)
	for _, f := range []*os.File{p.master, p.stdout, p.stderr} {
		if f != nil {
			_ = f.SetReadDeadline(deadline)
		}
	}
	p.output.Wait()

	name, payload := exitRequest(p.cmd.ProcessState)
	fields := []zap.Field{zap.Int("pid", p.pid()), zap.String("exit", p.cmd.ProcessState.String())}
	if exitErr := (*exec.ExitError)(nil); err != nil && !errors.As(err, &exitErr) {
		fields = append(fields, zap.Error(err)) // killed on cancel, or wait failed
	}
	p.log.Info("process_exited", fields...)
	if _, err := p.ch.SendRequest(name, false, payload); err != nil {
		p.log.Debug("exit_report_failed", zap.Error(err))
	}
	_ = p.ch.CloseWrite()
	_ = p.ch.Close()
}

// exitRequest returns the request reporting how a process ended:
// exit-signal if a signal killed it, else exit-status.
func exitRequest(ps *os.ProcessState) (string, []byte) {
	if ps == nil {
		return requestExitStatus, ssh.Marshal(exitStatusMsg{Status: 255})
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		name, ok := signalToSSH[ws.Signal()]
		if !ok {
			// OpenSSH's name for a signal RFC 4254 does not list.
			name = "SIG@openssh.com"
		}
		return requestExitSignal, ssh.Marshal(exitSignalMsg{Signal: string(name), CoreDumped: ws.CoreDump()})
	}
	return requestExitStatus, ssh.Marshal(exitStatusMsg{Status: uint32(ps.ExitCode())})
}

// signal sends sig to the process.
func (p *process) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("sending %v to %d: %w", sig, p.pid(), err)
	}
	return nil
}

// resize sets the size of the process's pty.
func (p *process) resize(size winsize) error {
	if p.master == nil {
		return errors.New("session has no pty")
	}
	return setWinsize(p.master, size)
}

// wait waits for every goroutine of the process, then closes its files. The
// caller must have cancelled the process's context and the channel must be
// closed, so that the process dies and reads from the channel return.
func (p *process) wait() {
	// A stdin copier may be blocked writing to a process that stopped
	// reading; the channel is closed, so nothing more is owed to it.
	for _, f := range []*os.File{p.master, p.stdin} {
		if f != nil {
			_ = f.SetWriteDeadline(time.Now())
		}
	}
	p.all.Wait()
	for _, f := range []*os.File{p.master, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// nonblocking returns f's descriptor as a non-blocking, pollable *os.File
// (so that deadlines work) and closes f.
func nonblocking(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicating %s: %w", f.Name(), err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting %s non-blocking: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// setWinsize sets the terminal size of the pty behind f. It avoids f.Fd(),
// which would put f back into blocking mode.
func setWinsize(f *os.File, size winsize) error {
	ws := &unix.Winsize{
		Row:    clampUint16(size.rows),
		Col:    clampUint16(size.cols),
		Xpixel: clampUint16(size.width),
		Ypixel: clampUint16(size.height),
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws)
	}); err != nil {
		return err
	}
	return ioctlErr
}

// clampUint16 converts v, capping it at the largest uint16.
func clampUint16(v uint32) uint16 {
	return uint16(min(v, 0xffff))
}
