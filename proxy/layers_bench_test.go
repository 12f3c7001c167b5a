package proxy

import (
	"context"
	"io"
	"net"
	"runtime/pprof"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// The BenchmarkLayers benchmarks move bytes through the bastion's SSH
// layers as bench/run's routes do, every end in this process over loopback
// TCP: direct mode (the person's connection and the upstream one: two
// layers the bastion terminates) and ProxyJump (the outer connection, the
// inner one carried in its direct-tcpip channel, and the upstream one:
// three). Every goroutine runs under a pprof label side=bastion or
// side=end (the person's client, the instance), inherited by the
// goroutines x/crypto starts, so that
//
//	go test -run - -bench BenchmarkLayers -cpuprofile cpu.out ./proxy/
//	go tool pprof -tagfocus side=bastion -top proxy.test cpu.out
//
// shows the bastion's own share of the CPU; cpu-s/GiB counts the whole
// process (both ends too).
func BenchmarkLayersDirectDown(b *testing.B) { benchmarkLayers(b, false, true) }
func BenchmarkLayersDirectUp(b *testing.B)   { benchmarkLayers(b, false, false) }
func BenchmarkLayersJumpDown(b *testing.B)   { benchmarkLayers(b, true, true) }
func BenchmarkLayersJumpUp(b *testing.B)     { benchmarkLayers(b, true, false) }

// labeled runs f under the pprof label side=side.
func labeled(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) { f() })
}

// sshPair connects an SSH server and client over conn-making functions,
// the server's goroutines labelled serverSide and the client's clientSide.
func sshPair(tb testing.TB, serverNC, clientNC net.Conn, serverSide, clientSide string) (server, client peer) {
	tb.Helper()
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(testSigner(tb))
	type res struct {
		p   peer
		err error
	}
	sres := make(chan res, 1)
	go labeled(serverSide, func() {
		c, chans, reqs, err := ssh.NewServerConn(serverNC, scfg)
		sres <- res{peer{conn: c, chans: chans, reqs: reqs}, err}
	})
	cres := make(chan res, 1)
	go labeled(clientSide, func() {
		c, chans, reqs, err := ssh.NewClientConn(clientNC, "test", &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
		cres <- res{peer{conn: c, chans: chans, reqs: reqs}, err}
	})
	s, c := <-sres, <-cres
	if s.err != nil || c.err != nil {
		tb.Fatal(s.err, c.err)
	}
	return s.p, c.p
}

// loopPair returns both ends of a loopback TCP connection.
func loopPair(tb testing.TB) (a, b net.Conn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	b, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	a = <-acc
	if a == nil {
		tb.Fatal("accept failed")
	}
	return a, b
}

func benchmarkLayers(b *testing.B, jump, down bool) {
	const chunk = 32 * 1024
	// The instance: one session whose exec streams or swallows bytes.
	upA, upB := loopPair(b)
	instance, bastionUp := sshPair(b, upA, upB, "end", "bastion")
	sunk := make(chan int64, 1)
	go labeled("end", func() {
		go ssh.DiscardRequests(instance.reqs)
		execInstance(instance.chans, func(ch ssh.Channel) {
			if down {
				buf := make([]byte, chunk)
				for {
					if _, err := ch.Write(buf); err != nil {
						return
					}
				}
			}
			n, _ := io.Copy(io.Discard, ch)
			sunk <- n
			ch.Close()
		})
	})

	// The person's side of the splice, and the person's client.
	outA, outB := loopPair(b)
	bastionOuter, personOuter := sshPair(b, outA, outB, "bastion", "end")
	spliced, person := bastionOuter, personOuter
	if jump {
		// The person opens a direct-tcpip channel and runs the inner
		// connection in it, as ssh -J does.
		accepted := make(chan ssh.Channel, 1)
		go labeled("bastion", func() {
			go ssh.DiscardRequests(bastionOuter.reqs)
			for nc := range bastionOuter.chans {
				ch, reqs, err := nc.Accept()
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				accepted <- ch
			}
		})
		var pch ssh.Channel
		labeled("end", func() {
			go ssh.DiscardRequests(personOuter.reqs)
			go func() {
				for nc := range personOuter.chans {
					nc.Reject(ssh.Prohibited, "no")
				}
			}()
			var reqs <-chan *ssh.Request
			var err error
			pch, reqs, err = personOuter.conn.OpenChannel(chanDirectTCPIP, ssh.Marshal(tcpipChannel{Host: "target", Port: 22, OrigHost: "127.0.0.1", OrigPort: 1}))
			if err != nil {
				b.Fatal(err)
			}
			go ssh.DiscardRequests(reqs)
		})
		bch := <-accepted
		addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
		spliced, person = sshPair(b, &chanConn{Channel: bch, local: addr, remote: addr}, &chanConn{Channel: pch, local: addr, remote: addr}, "bastion", "end")
	}
	done := make(chan struct{})
	go labeled("bastion", func() {
		splice(context.Background(), spliced, bastionUp, allowGuard{}, zap.NewNop())
		close(done)
	})

	var cpu float64
	labeled("end", func() {
		client := ssh.NewClient(person.conn, person.chans, person.reqs)
		defer func() {
			client.Close()
			personOuter.conn.Close()
			<-done
		}()
		s, err := client.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		in, _ := s.StdinPipe()
		if err := s.Start("bulk"); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ResetTimer()
		cpu0 := processCPU(b)
		for range b.N {
			var err error
			if down {
				_, err = io.ReadFull(out, buf)
			} else {
				_, err = in.Write(buf)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if !down {
			in.Close()
			if n := <-sunk; n != int64(b.N)*chunk {
				b.Fatalf("instance got %d bytes, want %d", n, int64(b.N)*chunk)
			}
		}
		b.StopTimer()
		cpu = (processCPU(b) - cpu0).Seconds()
	})
	b.ReportMetric(cpu/(float64(b.N)*chunk)*(1<<30), "cpu-s/GiB")
}
