package proxy

import (
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// idleSessions is how many idle sessions BenchmarkIdleSplice holds open at
// once per iteration.
const idleSessions = 200

// BenchmarkIdleSplice holds idleSessions idle pty sessions, each through a
// splice of its own (the direct mode's two SSH legs, person and instance
// ends included, all in this process over loopback TCP), and reports the
// heap and stack in use and the goroutines, per session: what the splice
// and x/crypto cost a session that does nothing. Run with
// -memprofile and `go tool pprof -sample_index=inuse_space` to see whose
// allocations they are (the person's and the instance's ends are in the
// figures too: about half of the x/crypto share is theirs).
func BenchmarkIdleSplice(b *testing.B) {
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		b.StartTimer()

		type open struct {
			client *ssh.Client
			done   <-chan struct{}
		}
		opened := make([]open, 0, idleSessions)
		for range idleSessions {
			personSrv, personCli := connPair(b)
			upSrv, upCli := connPair(b)
			go ssh.DiscardRequests(upSrv.reqs)
			go idleInstance(upSrv.chans)
			done := spliceInBackground(personSrv, upCli)
			client := ssh.NewClient(personCli.conn, personCli.chans, personCli.reqs)
			s, err := client.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
				b.Fatal(err)
			}
			if err := s.Shell(); err != nil {
				b.Fatal(err)
			}
			opened = append(opened, open{client, done})
		}

		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		stack := float64(after.StackInuse) - float64(before.StackInuse)
		b.ReportMetric(heap/idleSessions, "heap-B/session")
		b.ReportMetric(stack/idleSessions, "stack-B/session")
		if path := os.Getenv("IDLE_HEAP_PROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		b.ReportMetric(float64(g1-g0)/idleSessions, "goroutines/session")
		var wg sync.WaitGroup
		for _, o := range opened {
			wg.Go(func() {
				o.client.Close()
				<-o.done
			})
		}
		wg.Wait()
		b.StartTimer()
	}
}

// idleInstance accepts session channels, agrees to pty-req and shell, and
// then leaves the shell idle until the channel closes.
func idleInstance(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				req.Reply(req.Type == reqPTY || req.Type == reqShell, nil)
			}
		}()
	}
}

// writeHeapProfile writes the live heap to path.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
