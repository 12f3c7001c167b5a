package sftpwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The test binary doubles as a tee between a real OpenSSH client and a
// real server program: sftp -D and scp -S run it, and it runs the server
// (sftp-server, or the scp -t/-f command scp asked "ssh" to run), passing
// both streams through unchanged while logging them.
const (
	// teeDirEnv, when set, makes the test binary a tee that logs into
	// this directory.
	teeDirEnv = "SFTPWATCH_TEE_DIR"
	// teeModeEnv is "sftp" (run the program in teeServerEnv) or "scp"
	// (run the last argument, as ssh would run a remote command).
	teeModeEnv   = "SFTPWATCH_TEE_MODE"
	teeServerEnv = "SFTPWATCH_SFTP_SERVER"
)

// The tee's log is a sequence of records: a direction byte, a big-endian
// uint32 length, and the bytes. Each chunk is logged before it is passed
// on, so the log keeps the order in which each side could have seen the
// other's bytes.
const (
	logClient = 'c'
	logServer = 's'
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(teeDirEnv); dir != "" {
		if err := runTee(dir, os.Getenv(teeModeEnv), os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "sftpwatch tee: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runTee runs the server side and copies stdin to it and its stdout to
// stdout, logging both.
func runTee(dir, mode string, args []string) error {
	var cmd *exec.Cmd
	switch mode {
	case "sftp":
		cmd = exec.Command(os.Getenv(teeServerEnv))
	case "scp":
		if len(args) == 0 {
			return errors.New("no remote command")
		}
		command := args[len(args)-1]
		if err := os.WriteFile(filepath.Join(dir, "command"), []byte(command), 0o644); err != nil {
			return err
		}
		cmd = exec.Command("/bin/sh", "-c", command)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var mu sync.Mutex // orders log records
	record := func(dir byte, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		hdr := binary.BigEndian.AppendUint32([]byte{dir}, uint32(len(b)))
		log.Write(hdr)
		log.Write(b)
	}
	pass := func(dst io.Writer, src io.Reader, dir byte) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				record(dir, buf[:n])
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	// The client's side ends when the client closes its end; the
	// process exits once the server is done, without waiting for it.
	go func() {
		pass(in, os.Stdin, logClient)
		in.Close()
	}()
	pass(os.Stdout, out, logServer)
	err = cmd.Wait()
	mu.Lock() // no record half written at exit
	return err
}

// logRecord is one chunk of a tee log.
type logRecord struct {
	client bool
	b      []byte
}

func readLog(t *testing.T, path string) []logRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading tee log: %v", err)
	}
	var recs []logRecord
	for len(b) > 0 {
		if len(b) < 5 || int(binary.BigEndian.Uint32(b[1:5])) > len(b)-5 {
			t.Fatalf("tee log %s truncated", path)
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		recs = append(recs, logRecord{client: b[0] == logClient, b: b[5 : 5+n]})
		b = b[5+n:]
	}
	return recs
}
