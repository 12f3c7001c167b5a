package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// noticeGuard lets everything through and, like link.say, writes a notice
// on the stderr of every session channel it observes, from a goroutine of
// its own, while the splice copies the instance's stderr and EOF there.
type noticeGuard struct {
	allowGuard
	wg *sync.WaitGroup
}

func (g noticeGuard) observe(_ direction, typ string, _ []byte, person ssh.Channel) channelObserver {
	if typ == chanSession {
		g.wg.Go(func() {
			for range 20 {
				if _, err := io.WriteString(person.Stderr(), "\r\nbastion: notice\r\n"); err != nil {
					return
				}
			}
		})
	}
	return nil
}

// TestSpliceNoticeDuringEOF writes the bastion's own notices on the
// person's stderr while the splice relays the instance's stderr and EOF.
// x/crypto does not synchronise those (its EOF flag and per-stream packet
// buffer): under -race this failed until the person's end serialised
// them (personChannel). The person gets the instance's output whole.
func TestSpliceNoticeDuringEOF(t *testing.T) {
	var wg sync.WaitGroup
	person, _ := linked(t, noticeGuard{wg: &wg}, nil)
	client := newClient(person)
	for i := range 50 {
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		s.Stdout, s.Stderr = &out, &errb
		err = s.Run("out-err-exit3")
		if ee := (*ssh.ExitError)(nil); !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Fatalf("run %d: got %v, want exit status 3", i, err)
		}
		if out.String() != "out" || !strings.Contains(errb.String(), "err") {
			t.Fatalf("run %d: stdout %q stderr %q, want out and err", i, out.String(), errb.String())
		}
	}
	client.Close()
	wg.Wait()
}
