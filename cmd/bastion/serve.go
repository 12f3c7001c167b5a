package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"bastion/assemble"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stdout)
	cf := addConfigFlag(fs)
	devLog := fs.Bool("dev-log", false, "human-readable console logs instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	log := newLogger(*devLog, stderr)
	defer log.Sync()
	assemble.LogWarnings(log, cfg)
	raiseOpenFiles(log)
	tuneGC(log)

	b, err := assemble.New(ctx, cfg, assemble.Options{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	l, err := b.Listen()
	if err != nil {
		return err
	}
	return serve(ctx, b, l, *cf.path, cfg.WatchConfig, cfg.Limits.DrainTimeout.D(), log)
}

// newLogger returns a JSON logger, or a console one for --dev-log.
func newLogger(dev bool, w io.Writer) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	if dev {
		encCfg = zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.InfoLevel))
}

// serve runs b on l until SIGTERM or SIGINT (or ctx is done), reopening
// the audit log and reloading the config at path on SIGHUP, reopening the
// audit log only on SIGUSR1 (logrotate), and reloading when the file
// changes if watch is set. Then it drains: no new connections, live
// sessions are told once and may go on until drainTimeout, then are
// closed; a second SIGTERM or SIGINT ends the drain at once. A drained
// bastion returns nil (exit 0).
func serve(ctx context.Context, b *assemble.Bastion, l net.Listener, path string, watch bool, drainTimeout time.Duration, log *zap.Logger) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)

	if err := b.Start(); err != nil {
		return err
	}
	reload := make(chan struct{}, 1)
	if watch {
		wctx, stopWatch := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer func() {
			stopWatch()
			wg.Wait()
		}()
		wg.Go(func() {
			watchFile(wctx, path, time.Second, func() {
				select {
				case reload <- struct{}{}:
				default:
				}
			})
		})
	}

	errc := make(chan error, 1)
	go func() { errc <- b.Serve(l) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-reload:
			b.ReloadFile(path)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				b.ReopenAudit()
				b.ReloadFile(path)
				continue
			case syscall.SIGUSR1:
				b.ReopenAudit()
				continue
			}
			return drain(b, drainTimeout, log, sigs, errc)
		case <-ctx.Done():
			return drain(b, drainTimeout, log, sigs, errc)
		}
	}
}

// drain shuts b down within deadline, or at once on a second SIGTERM or
// SIGINT.
func drain(b *assemble.Bastion, deadline time.Duration, log *zap.Logger, sigs <-chan os.Signal, errc <-chan error) error {
	log.Info("draining", zap.Int("connections", b.Server.ActiveConns()), zap.Duration("deadline", deadline))
	fmt.Fprintf(os.Stderr, "bastion: draining %d connections for up to %s (send SIGTERM again to stop now)\n", b.Server.ActiveConns(), deadline)
	sctx, cancel := context.WithTimeoutCause(context.Background(), deadline, errors.New("drain deadline passed"))
	defer cancel()
	go func() {
		for sig := range sigs {
			switch sig {
			case syscall.SIGHUP, syscall.SIGUSR1:
				b.ReopenAudit()
			default:
				log.Info("drain_interrupted")
				cancel()
				return
			}
		}
	}()
	b.Drain(sctx)
	<-errc
	log.Info("drained")
	return nil
}

// watchFile calls changed when path's size, modification time or inode
// changes (a ConfigMap update swaps a symlink), checking every interval
// until ctx is done. Polling needs no extra dependency and sees edits made
// by any means.
func watchFile(ctx context.Context, path string, interval time.Duration, changed func()) {
	stat := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		return fmt.Sprintf("%d/%d/%d", fi.Size(), fi.ModTime().UnixNano(), ino)
	}
	last := stat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now := stat(); now != last && now != "" {
				last = now
				changed()
			}
		}
	}
}
