// Package assemble builds a bastion from its config: host keys, the audit
// log, metrics, the providers, recordings and their upload, the rules, and
// the admin server with its readiness check. `bastion serve`, `bastion
// demo` and the in-process fault suite all build theirs here, so that what
// is tested is what runs; cmd/bastion only parses flags and handles
// signals.
package assemble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/audit/recording"
	"bastion/auth"
	"bastion/config"
	"bastion/fleet"
	"bastion/metrics"
	"bastion/proxy"
	"bastion/upstream"
)

// Options are what a caller sets beside the config. The zero value is
// what `bastion serve` uses.
type Options struct {
	// Logger receives the bastion's log. If nil, nothing is logged.
	Logger *zap.Logger
	// AWS, if non-nil, replaces the SDK's default chain (env, shared
	// config, IMDS, IRSA), which is otherwise loaded when first needed.
	// The demo and the tests point it at the AWS fake.
	AWS *aws.Config
	// Audit, if non-nil, receives the audit events instead of the file
	// audit.log names; Close closes it.
	Audit *audit.Logger
	// AdminListener, if non-nil, is where Start serves the admin server
	// instead of listening on admin_listen.
	AdminListener net.Listener
	// PeerListener, if non-nil, is where Start serves the other replicas
	// instead of listening on fleet.advertise.
	PeerListener net.Listener
	// Stderr receives the lines meant for the operator (readiness,
	// warnings). If nil, os.Stderr.
	Stderr io.Writer
}

// Bastion is a proxy.Server built from a config, with what it owns. Build
// one with New; Start the services beside it, Serve its listener, Drain or
// Close it.
type Bastion struct {
	// Server is the SSH proxy. Its fields may be changed before Serve
	// (a test wraps the host CA).
	Server *proxy.Server
	// Audit is the audit log the server writes to.
	Audit *audit.Logger
	// Metrics are the server's metrics, served on the admin server.
	Metrics *metrics.Metrics
	// Uploader sends finished recordings to S3; nil without audit.s3.
	Uploader *recording.Uploader
	// CloudWatch sends the audit lines to CloudWatch Logs; nil without
	// audit.cloudwatch, or when Options.Audit was given.
	CloudWatch *audit.CloudWatch

	cfg    *config.Config // the config the bastion was built from
	log    *zap.Logger
	stderr io.Writer
	admin  net.Listener // from Options; nil to listen on admin_listen
	aws    *awsLoader
	health *providerHealth
	// fleet is the fleet store's health; nil without a fleet store.
	fleet        *fleetHealth
	peerListener net.Listener // from Options; nil to listen on fleet.advertise

	// sso is what SSO keeps across reloads; nil without sso at start.
	sso *ssoState

	// draining is set once Drain has been called (readiness).
	draining atomic.Bool

	stopBG func()         // ends what Start started
	bg     sync.WaitGroup // what Start started
}

// New builds the bastion cfg describes: host keys (a key file is created
// on first start), audit log, metrics, providers, recordings and rules. It
// starts nothing; Close releases what it opened.
func New(ctx context.Context, cfg *config.Config, opt Options) (*Bastion, error) {
	log := opt.Logger
	if log == nil {
		log = zap.NewNop()
	}
	stderr := opt.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	m := metrics.New()
	loader := &awsLoader{given: opt.AWS}
	hostKey, err := loadHostKey(ctx, "host_key", cfg.HostKey, loader, cfg.Limits.AWSTimeout.D(), log, m)
	if err != nil {
		return nil, err
	}
	hostCA, err := loadHostKey(ctx, "host_ca_key", cfg.HostCAKey, loader, cfg.Limits.AWSTimeout.D(), log, m)
	if err != nil {
		return nil, err
	}
	// Compared by key, not by name: a symlink, a hard link, a copy or two
	// AWS references to one secret must not make the host key a CA.
	if fp := ssh.FingerprintSHA256(hostKey.PublicKey()); fp == ssh.FingerprintSHA256(hostCA.PublicKey()) {
		return nil, fmt.Errorf("host_ca_key: %s holds the same key as host_key (%s, %s): the host CA must be a key of its own", cfg.HostCAKey, cfg.HostKey, fp)
	}
	al := opt.Audit
	var cw *audit.CloudWatch
	if al == nil {
		if cw, err = newCloudWatch(ctx, cfg, log, loader, m); err != nil {
			return nil, err
		}
		if al, err = openAudit(cfg, cw); err != nil {
			return nil, err
		}
	}
	var (
		store *fleet.Store
		fh    *fleetHealth
	)
	if cfg.Fleet != nil {
		if store, err = newFleetStore(ctx, cfg, loader); err != nil {
			al.Close()
			return nil, err
		}
		fh = newFleetHealth(m)
	}
	providers, err := newProviders(ctx, cfg, log, al, loader, m, true, store, fh)
	if err != nil {
		al.Close()
		return nil, err
	}
	b := &Bastion{Audit: al, CloudWatch: cw, Metrics: m, cfg: cfg, log: log, stderr: stderr, admin: opt.AdminListener,
		aws: loader, health: newProviderHealth(cfg), stopBG: func() {}, fleet: fh, peerListener: opt.PeerListener}
	rec := proxy.Recording{Dir: cfg.Audit.Recordings, Input: cfg.Audit.RecordInput, Exec: cfg.Audit.RecordExec,
		MaxBytes: int64(cfg.Audit.MaxRecordingSize)}
	if rec.Recipients, err = cfg.Audit.RecordingRecipients(); err != nil {
		al.Close()
		return nil, err
	}
	if cfg.Audit.S3 != nil {
		u, err := newUploader(ctx, cfg, log, al, loader, m)
		if err != nil {
			al.Close()
			return nil, err
		}
		b.Uploader = u
		rec.Finished = u.Enqueue
	}
	b.Server = &proxy.Server{
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
	if store != nil {
		b.Server.Fleet = proxy.Fleet{Directory: store, Counts: store, Penalties: store,
			Replica: store.Replica, Advertise: os.ExpandEnv(cfg.Fleet.Advertise), Degraded: fh.failed}
	}
	if b.Server.AuditFailOpen {
		log.Warn("audit_fail_open", zap.String("on_failure", cfg.Audit.OnFailure),
			zap.String("meaning", "sessions go on when their audit events or recordings cannot be written"))
		fmt.Fprintln(stderr, "bastion: WARNING: audit.on_failure is continue: sessions go on unaudited or unrecorded when the audit log or a recording cannot be written")
	}
	if cfg.SSO != nil {
		st, err := newSSOStore(cfg, store)
		if err != nil {
			al.Close()
			return nil, err
		}
		b.sso = &ssoState{store: st}
	}
	rules, err := b.rules(cfg)
	if err != nil {
		al.Close()
		return nil, err
	}
	b.Server.SetRules(rules)
	return b, nil
}

// rules returns Rules(cfg) with the SSO service of cfg.
func (b *Bastion) rules(cfg *config.Config) (*proxy.Rules, error) {
	r := Rules(cfg)
	svc, err := b.sso.service(cfg)
	if err != nil {
		return nil, err
	}
	if svc != nil {
		r.SSO = svc
	} else if cfg.SSO != nil {
		b.log.Warn("sso_needs_restart", zap.String("meaning", "sso was added by a reload; it takes effect at the next start"))
	}
	return r, nil
}

// openAudit opens audit.log, chained, with its checkpoints signed by
// audit.signing_key when one is configured (created if missing).
func openAudit(cfg *config.Config, cw *audit.CloudWatch) (*audit.Logger, error) {
	opt := audit.Options{CheckpointInterval: cfg.Audit.CheckpointInterval.D()}
	if cw != nil {
		opt.Sink = cw
	}
	if cfg.Audit.SigningKey != "" {
		k, err := audit.LoadSigningKey(cfg.Audit.SigningKey, true)
		if err != nil {
			return nil, fmt.Errorf("audit.signing_key: %w", err)
		}
		opt.SigningKey = k
	}
	return audit.OpenWith(cfg.Audit.Log, opt)
}

// Rules returns the users, policies and limits of cfg, as the server
// applies them at start and on every reload.
func Rules(cfg *config.Config) *proxy.Rules {
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
		RevokeLive:     cfg.RevokeLiveSessions,
		SessionControl: cfg.SessionControl.Groups,
	}
}

// Start starts what runs beside the SSH server until Close: the admin
// server (admin_listen, or Options.AdminListener), the recording uploader
// and the providers' health watch.
func (b *Bastion) Start() error {
	bg, stop := context.WithCancel(context.Background())
	b.stopBG = stop
	al := b.admin
	if al == nil && b.cfg.AdminListen != "" {
		var err error
		if al, err = net.Listen("tcp", b.cfg.AdminListen); err != nil {
			return fmt.Errorf("listening on admin_listen: %w", err)
		}
	}
	if al != nil {
		fmt.Fprintf(b.stderr, "bastion: admin on http://%s\n", al.Addr())
		b.bg.Go(func() {
			if err := b.Metrics.AdminServer(bg, al, b.Ready); err != nil {
				b.log.Error("admin_server_failed", zap.Error(err))
			}
		})
	}
	if b.Uploader != nil {
		b.Uploader.Start(bg)
	}
	if b.CloudWatch != nil {
		b.CloudWatch.Start()
	}
	b.bg.Go(func() { b.health.watch(bg, b.aws, b.cfg.Limits.AWSTimeout.D(), b.log, b.stderr) })
	if b.cfg.Fleet != nil && (b.cfg.Fleet.Advertise != "" || b.peerListener != nil) {
		return b.servePeers()
	}
	return nil
}

// Listen opens the SSH listener of listen, with the PROXY protocol if
// proxy_protocol is configured.
func (b *Bastion) Listen() (net.Listener, error) {
	l, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	pp := b.cfg.ProxyProtocol
	if pp == nil {
		return l, nil
	}
	pl, err := proxy.ProxyProtocolListener(l, pp.TrustedCIDRs, pp.Required, b.cfg.Limits.HandshakeTimeout.D())
	if err != nil {
		l.Close()
		return nil, err
	}
	return pl, nil
}

// Serve logs where the bastion listens, prints the readiness line tests
// and scripts wait for, and serves l until Drain or Close, returning what
// proxy.Server.Serve returns.
func (b *Bastion) Serve(l net.Listener) error {
	b.log.Info("listening", zap.String("addr", l.Addr().String()),
		zap.String("host_ca", string(ssh.MarshalAuthorizedKey(b.Server.HostCA.PublicKey()))))
	fmt.Fprintf(b.stderr, "bastion: listening on %s\n", l.Addr())
	return b.Server.Serve(l)
}

// Drain makes the bastion not ready and shuts the server down: no new
// connections, live sessions are told once and may go on until ctx is
// done, then are closed.
func (b *Bastion) Drain(ctx context.Context) {
	b.draining.Store(true)
	b.Server.Shutdown(ctx)
}

// Ready is the admin server's readiness check: rules loaded, host keys
// present, not draining, every configured provider able to work, and,
// failing closed, audit events reaching CloudWatch Logs. It reports a line
// per provider (and for the fleet store and CloudWatch).
func (b *Bastion) Ready() ([]string, error) {
	lines, err := b.health.report()
	if b.fleet != nil {
		lines = append(lines, b.fleet.line())
	}
	if line, cwErr := b.cloudWatchLine(); line != "" {
		lines = append(lines, line)
		if err == nil {
			err = cwErr
		}
	}
	switch {
	case b.draining.Load():
		return lines, errors.New("draining")
	case b.Server.HostKey == nil || b.Server.HostCA == nil:
		return lines, errors.New("host keys missing")
	}
	return lines, err
}

// Reload swaps the users, policies and limits for those of cfg, logging
// and auditing it. Settings that need a restart (listeners, providers,
// host keys, audit) are not changed.
func (b *Bastion) Reload(cfg *config.Config) {
	rules, err := b.rules(cfg)
	if err != nil {
		b.Metrics.Reload(err)
		b.log.Error("reload_rejected", zap.Error(err))
		b.emit(audit.Event{Type: audit.TypeConfigRejected, Error: err.Error()})
		return
	}
	b.Metrics.Reload(nil)
	b.Server.SetRules(rules)
	LogWarnings(b.log, cfg)
	b.log.Info("reloaded", zap.Int("users", len(cfg.Users)), zap.Int("policies", len(cfg.Policies)))
	b.emit(audit.Event{Type: audit.TypeConfigReloaded})
}

// ReloadFile reads the config file at path again and Reloads it; an
// invalid file is logged and audited, and the old rules stay.
func (b *Bastion) ReloadFile(path string) {
	cfg, err := config.Load(path)
	if err != nil {
		b.Metrics.Reload(err)
		b.log.Error("reload_rejected", zap.Error(err))
		b.emit(audit.Event{Type: audit.TypeConfigRejected, Error: err.Error()})
		return
	}
	b.Reload(cfg)
}

// ReopenAudit opens the audit log again by its path, so that after
// logrotate has renamed it the next events go to a new file there.
func (b *Bastion) ReopenAudit() {
	if err := b.Audit.Reopen(); err != nil {
		b.log.Error("audit_reopen_failed", zap.Error(err))
		return
	}
	if p := b.Audit.Path(); p != "" {
		b.log.Info("audit_reopened", zap.String("path", p))
	}
}

// emit writes an event of the bastion itself (not of a connection); a
// failure is logged and counted.
func (b *Bastion) emit(e audit.Event) {
	if err := b.Audit.Emit(e); err != nil {
		b.Metrics.AuditWriteFailure("audit_log")
		b.log.Error("audit_write_failed", zap.String("what", "audit_log"), zap.Error(err))
	}
}

// Close ends what Start started and waits for it, closes the server and
// every connection, stops the uploader and closes the audit log.
func (b *Bastion) Close() {
	b.stopBG()
	b.bg.Wait()
	b.Server.Close()
	if b.Uploader != nil {
		b.Uploader.Close()
	}
	b.Audit.Close()
	// After the audit log's last line (the stop checkpoint) is buffered.
	b.closeCloudWatch()
}

// LogWarnings logs the config's warnings, one line each.
func LogWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("config_warning", zap.String("warning", w.Error()))
	}
}
