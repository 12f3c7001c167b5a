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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/audit/recording"
	"bastion/auth"
	"bastion/config"
	"bastion/metrics"
	"bastion/proxy"
	"bastion/upstream"
	"bastion/upstream/secretref"
	"bastion/upstream/static"
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
	logWarnings(log, cfg)

	b, err := newBastion(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer b.close()
	l, err := listen(cfg)
	if err != nil {
		return err
	}
	return b.serve(ctx, l, *cf.path)
}

// listen opens the SSH listener, with PROXY protocol if configured.
func listen(cfg *config.Config) (net.Listener, error) {
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	if pp := cfg.ProxyProtocol; pp != nil {
		pl, err := proxy.ProxyProtocolListener(l, pp.TrustedCIDRs, pp.Required, cfg.Limits.HandshakeTimeout.D())
		if err != nil {
			l.Close()
			return nil, err
		}
		return pl, nil
	}
	return l, nil
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

// bastion is a configured, not yet listening proxy with what it owns.
type bastion struct {
	srv      *proxy.Server
	audit    *audit.Logger
	log      *zap.Logger
	metrics  *metrics.Metrics
	uploader *recording.Uploader // nil without audit.s3
	cfg      *config.Config
	aws      *awsLoader
	health   *providerHealth

	// draining is set once SIGTERM has been received (readiness).
	draining atomic.Bool
}

// newBastion builds the proxy from cfg: host keys (created on first start),
// audit log, metrics, providers, recordings and rules. awsCfg, if non-nil,
// replaces the SDK's default chain (the demo points it at the fake).
func newBastion(ctx context.Context, cfg *config.Config, log *zap.Logger, awsCfg *aws.Config) (*bastion, error) {
	m := metrics.New()
	aws := &awsLoader{given: awsCfg}
	hostKey, err := loadHostKey(ctx, "host_key", cfg.HostKey, aws, cfg.Limits.AWSTimeout.D(), log, m)
	if err != nil {
		return nil, err
	}
	hostCA, err := loadHostKey(ctx, "host_ca_key", cfg.HostCAKey, aws, cfg.Limits.AWSTimeout.D(), log, m)
	if err != nil {
		return nil, err
	}
	// Compared by key, not by name: a symlink, a hard link, a copy or two
	// AWS references to one secret must not make the host key a CA.
	if fp := ssh.FingerprintSHA256(hostKey.PublicKey()); fp == ssh.FingerprintSHA256(hostCA.PublicKey()) {
		return nil, fmt.Errorf("host_ca_key: %s holds the same key as host_key (%s, %s): the host CA must be a key of its own", cfg.HostCAKey, cfg.HostKey, fp)
	}
	al, err := audit.Open(cfg.Audit.Log)
	if err != nil {
		return nil, err
	}
	providers, err := newProviders(ctx, cfg, log, al, aws, m)
	if err != nil {
		al.Close()
		return nil, err
	}
	b := &bastion{audit: al, log: log, metrics: m, cfg: cfg, aws: aws, health: newProviderHealth(cfg)}
	rec := proxy.Recording{Dir: cfg.Audit.Recordings, Input: cfg.Audit.RecordInput, Exec: cfg.Audit.RecordExec,
		MaxBytes: int64(cfg.Audit.MaxRecordingSize)}
	if cfg.Audit.S3 != nil {
		u, err := newUploader(ctx, cfg, log, al, aws, m)
		if err != nil {
			al.Close()
			return nil, err
		}
		b.uploader = u
		rec.Finished = u.Enqueue
	}
	b.srv = &proxy.Server{
		HostKey:          hostKey,
		HostCA:           hostCA,
		Resolver:         &upstream.Resolver{Providers: providers},
		Logger:           log,
		Audit:            al,
		HandshakeTimeout: cfg.Limits.HandshakeTimeout.D(),
		DialTimeout:      cfg.Limits.DialTimeout.D(),
		AWSTimeout:       cfg.Limits.AWSTimeout.D(),
		MaxAuthTries:     cfg.Limits.MaxAuthTries,
		Ciphers:          cfg.Ciphers,
		Metrics:          m,
		Recording:        rec,
		AuditFailOpen:    cfg.Audit.OnFailure == config.OnFailureContinue,
		MinFreeSpace:     int64(cfg.Audit.MinFreeSpace),
	}
	if b.srv.AuditFailOpen {
		log.Warn("audit_fail_open", zap.String("on_failure", cfg.Audit.OnFailure),
			zap.String("meaning", "sessions go on when their audit events or recordings cannot be written"))
		fmt.Fprintln(os.Stderr, "bastion: WARNING: audit.on_failure is continue: sessions go on unaudited or unrecorded when the audit log or a recording cannot be written")
	}
	b.srv.SetRules(rulesFrom(cfg))
	return b, nil
}

// loadHostKey returns the key that value (of config key) names: a file,
// created on first start if missing, or an SSM parameter or Secrets
// Manager secret, fetched now and kept in memory only (replicas share it;
// nothing is created or written).
func loadHostKey(ctx context.Context, key, value string, aws *awsLoader, timeout time.Duration, log *zap.Logger, m *metrics.Metrics) (ssh.Signer, error) {
	ref, err := secretref.Parse(value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if !ref.IsAWS() {
		signer, created, err := proxy.LoadOrCreateKey(value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if created {
			log.Info("key_created", zap.String("key", key), zap.String("path", value), zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())))
		}
		return signer, nil
	}
	awsCfg, err := aws.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	f := secretref.NewFetcher(awsCfg)
	f.Timeout, f.Logger, f.Observe = timeout, log.Named("keys"), m.AWSCall
	pem, err := f.Fetch(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", key, upstream.PublicMessage(err))
	}
	signer, err := ssh.ParsePrivateKey(pem)
	clear(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: %s holds no unencrypted private key: %w", key, ref, err)
	}
	log.Info("key_loaded", zap.String("key", key), zap.Stringer("from", ref), zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())))
	return signer, nil
}

func rulesFrom(cfg *config.Config) *proxy.Rules {
	l := cfg.Limits
	return &proxy.Rules{
		Auth:   auth.NewAuthenticator(cfg),
		Policy: auth.NewPolicy(cfg),
		Limits: proxy.Limits{
			IdleTimeout:           l.IdleTimeout.D(),
			MaxSession:            l.MaxSession.D(),
			MaxLinks:              l.MaxLinks,
			MaxLinksPerUser:       l.MaxLinksPerUser,
			MaxLinksPerConnection: l.MaxLinksPerConnection,
			MaxUnauthenticated:    l.MaxUnauthenticated,
			FailedAuthPerMinute:   l.FailedAuthPerMinute,
		},
		RevokeLive: cfg.RevokeLiveSessions,
	}
}

// newProviders builds the providers cfg configures.
func newProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, aws *awsLoader, m *metrics.Metrics) ([]upstream.Provider, error) {
	var providers []upstream.Provider
	fromAWS, err := newAWSProviders(ctx, cfg, log, al, aws, m)
	if err != nil {
		return nil, err
	}
	providers = append(providers, fromAWS...)
	if len(cfg.Providers.Static) > 0 {
		hosts := make([]static.Host, 0, len(cfg.Providers.Static))
		for _, st := range cfg.Providers.Static {
			signer, err := static.LoadSigner(st.PrivateKey)
			if err != nil {
				return nil, fmt.Errorf("providers.static %s: %w", st.Name, err)
			}
			h := static.Host{Name: st.Name, Address: st.Address, User: st.User, Signer: signer, KnownHosts: st.KnownHosts, Tags: st.Tags}
			if st.HostKey != "" {
				h.HostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(st.HostKey))
				if err != nil {
					return nil, fmt.Errorf("providers.static %s: host_key: %w", st.Name, err)
				}
			}
			hosts = append(hosts, h)
		}
		p, err := static.New(hosts)
		if err != nil {
			return nil, err
		}
		providers = append(providers, p)
	}
	return providers, nil
}

// serve runs until SIGTERM or SIGINT (or ctx is done), reopening the audit
// log and reloading the config on SIGHUP, reopening the audit log only on
// SIGUSR1 (logrotate), and reloading with watch_config when the file
// changes. Then it drains:
// no new connections, live sessions are told once and may go on until
// limits.drain_timeout, then are closed; a second SIGTERM or SIGINT ends the
// drain at once. A drained bastion returns nil (exit 0).
func (b *bastion) serve(ctx context.Context, l net.Listener, path string) error {
	b.log.Info("listening", zap.String("addr", l.Addr().String()),
		zap.String("host_ca", string(ssh.MarshalAuthorizedKey(b.srv.HostCA.PublicKey()))))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	if b.cfg.AdminListen != "" {
		al, err := net.Listen("tcp", b.cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("listening on admin_listen: %w", err)
		}
		fmt.Fprintf(os.Stderr, "bastion: admin on http://%s\n", al.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.metrics.AdminServer(bg, al, b.ready); err != nil {
				b.log.Error("admin_server_failed", zap.Error(err))
			}
		}()
	}
	if b.uploader != nil {
		b.uploader.Start(bg)
	}
	wg.Go(func() { b.health.watch(bg, b.aws, b.cfg.Limits.AWSTimeout.D(), b.log, os.Stderr) })
	reload := make(chan struct{}, 1)
	if b.cfg.WatchConfig {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchFile(bg, path, time.Second, func() {
				select {
				case reload <- struct{}{}:
				default:
				}
			})
		}()
	}

	// The readiness line tests and scripts wait for.
	fmt.Fprintf(os.Stderr, "bastion: listening on %s\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- b.srv.Serve(l) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-reload:
			b.reload(path)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				b.reopenAudit()
				b.reload(path)
				continue
			case syscall.SIGUSR1:
				b.reopenAudit()
				continue
			}
			return b.drain(sigs, errc)
		case <-ctx.Done():
			return b.drain(sigs, errc)
		}
	}
}

// drain shuts the server down within the drain deadline, or at once on a
// second SIGTERM or SIGINT.
func (b *bastion) drain(sigs <-chan os.Signal, errc <-chan error) error {
	b.draining.Store(true)
	deadline := b.cfg.Limits.DrainTimeout.D()
	b.log.Info("draining", zap.Int("connections", b.srv.ActiveConns()), zap.Duration("deadline", deadline))
	fmt.Fprintf(os.Stderr, "bastion: draining %d connections for up to %s (send SIGTERM again to stop now)\n", b.srv.ActiveConns(), deadline)
	sctx, cancel := context.WithTimeoutCause(context.Background(), deadline, errors.New("drain deadline passed"))
	defer cancel()
	go func() {
		for sig := range sigs {
			switch sig {
			case syscall.SIGHUP, syscall.SIGUSR1:
				b.reopenAudit()
			default:
				b.log.Info("drain_interrupted")
				cancel()
				return
			}
		}
	}()
	b.srv.Shutdown(sctx)
	<-errc
	b.log.Info("drained")
	return nil
}

// ready is the admin server's readiness check: rules loaded, host keys
// present, not draining, every configured provider able to work. It
// reports a line per provider.
func (b *bastion) ready() ([]string, error) {
	lines, err := b.health.report()
	switch {
	case b.draining.Load():
		return lines, errors.New("draining")
	case b.srv.HostKey == nil || b.srv.HostCA == nil:
		return lines, errors.New("host keys missing")
	}
	return lines, err
}

// reload re-reads the config and swaps users, policies and limits; an
// invalid file is logged and audited, and the old rules stay. Settings that
// need a restart (listeners, providers, host keys, audit) are not changed.
func (b *bastion) reload(path string) {
	cfg, err := config.Load(path)
	b.metrics.Reload(err)
	if err != nil {
		b.log.Error("reload_rejected", zap.Error(err))
		b.emit(audit.Event{Type: audit.TypeConfigRejected, Error: err.Error()})
		return
	}
	b.srv.SetRules(rulesFrom(cfg))
	logWarnings(b.log, cfg)
	b.log.Info("reloaded", zap.Int("users", len(cfg.Users)), zap.Int("policies", len(cfg.Policies)))
	b.emit(audit.Event{Type: audit.TypeConfigReloaded})
}

// reopenAudit opens the audit log again by its path, so that after
// logrotate has renamed it the next events go to a new file there.
func (b *bastion) reopenAudit() {
	if err := b.audit.Reopen(); err != nil {
		b.log.Error("audit_reopen_failed", zap.Error(err))
		return
	}
	if p := b.audit.Path(); p != "" {
		b.log.Info("audit_reopened", zap.String("path", p))
	}
}

// emit writes an event of the bastion itself (not of a connection); a
// failure is logged and counted.
func (b *bastion) emit(e audit.Event) {
	if err := b.audit.Emit(e); err != nil {
		b.metrics.AuditWriteFailure("audit_log")
		b.log.Error("audit_write_failed", zap.String("what", "audit_log"), zap.Error(err))
	}
}

// logWarnings logs the config's warnings, one line each.
func logWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("config_warning", zap.String("warning", w.Error()))
	}
}

func (b *bastion) close() {
	b.srv.Close()
	if b.uploader != nil {
		b.uploader.Close()
	}
	b.audit.Close()
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
