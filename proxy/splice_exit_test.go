package proxy

import (
	"io"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"
)

// exitOrderInstance serves session channels on p: each exec is answered,
// then the instance sends "out" and ends the channel in the order order
// names ("eof-status": EOF, exit-status 7, close, as OpenSSH's sshd does;
// "status-eof": exit-status first; "no-status": EOF and close only).
func exitOrderInstance(p peer, order string) {
	go ssh.DiscardRequests(p.reqs)
	go func() {
		for nc := range p.chans {
			ch, reqs, err := nc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer ch.Close()
				for req := range reqs {
					req.Reply(req.Type == reqExec, nil)
					if req.Type != reqExec {
						continue
					}
					io.WriteString(ch, "out")
					status := ssh.Marshal(struct{ Status uint32 }{7})
					switch order {
					case "eof-status":
						ch.CloseWrite()
						ch.SendRequest(reqExitStatus, false, status)
					case "status-eof":
						ch.SendRequest(reqExitStatus, false, status)
						ch.CloseWrite()
					case "no-status":
						ch.CloseWrite()
					}
					return
				}
			}()
		}
	}()
}

// TestSpliceExitStatusBeforeEOF checks the order a person gets the end of
// a command in: data, exit-status, EOF, whatever order the instance used,
// so that a client that closes the channel as soon as it sees EOF (PuTTY)
// still has the status. The person's side here closes at EOF, as PuTTY
// does; a status still to come after it would be lost.
func TestSpliceExitStatusBeforeEOF(t *testing.T) {
	for _, order := range []string{"eof-status", "status-eof", "no-status"} {
		t.Run(order, func(t *testing.T) {
			personSrv, personCli := connPair(t)
			upSrv, upCli := connPair(t)
			exitOrderInstance(upSrv, order)
			done := make(chan struct{})
			go func() {
				splice(t.Context(), personSrv, upCli, allowGuard{}, zaptest.NewLogger(t))
				close(done)
			}()
			t.Cleanup(func() {
				personCli.conn.Close()
				<-done
			})
			go ssh.DiscardRequests(personCli.reqs)
			for i := range 50 {
				ch, reqs, err := personCli.conn.OpenChannel(chanSession, nil)
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := ch.SendRequest(reqExec, true, ssh.Marshal(struct{ Command string }{"x"})); !ok || err != nil {
					t.Fatalf("exec: got %v %v, want accepted", ok, err)
				}
				read := make(chan []byte, 1)
				go func() {
					b, _ := io.ReadAll(ch)
					read <- b
				}()
				var out []byte
				select {
				case out = <-read:
				case <-time.After(20 * time.Second):
					t.Fatalf("run %d: no EOF in 20s", i)
				}
				// x/crypto hands a channel's packets over in order:
				// a status sent before the EOF is queued by now.
				var status *ssh.Request
				select {
				case status = <-reqs:
				default:
				}
				ch.Close()
				go ssh.DiscardRequests(reqs)
				if string(out) != "out" {
					t.Fatalf("run %d: got output %q, want %q", i, out, "out")
				}
				if order == "no-status" {
					if status != nil {
						t.Fatalf("run %d: got request %q, want none", i, status.Type)
					}
					continue
				}
				if status == nil || status.Type != reqExitStatus {
					t.Fatalf("run %d: got EOF before the exit status, want exit-status then EOF", i)
				}
			}
		})
	}
}
