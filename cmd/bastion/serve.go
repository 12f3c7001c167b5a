package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/config"
	"bastion/proxy"
	"bastion/upstream"
	"bastion/upstream/static"
)

// drainTimeout is how long SIGTERM lets live sessions go on.
const drainTimeout = 30 * time.Second

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
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

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBastion(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer b.close()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	return b.serve(ctx, l, *cf.path)
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
	srv   *proxy.Server
	audit *audit.Logger
	log   *zap.Logger
}

// newBastion builds the proxy from cfg: host keys (created on first start),
// audit log, providers and rules. awsCfg, if non-nil, replaces the SDK's
// default chain (the demo points it at the fake).
func newBastion(ctx context.Context, cfg *config.Config, log *zap.Logger, awsCfg *aws.Config) (*bastion, error) {
	hostKey, created, err := proxy.LoadOrCreateKey(cfg.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host_key: %w", err)
	}
	if created {
		log.Info("host_key_created", zap.String("path", cfg.HostKey), zap.String("fingerprint", ssh.FingerprintSHA256(hostKey.PublicKey())))
	}
	hostCA, created, err := proxy.LoadOrCreateKey(cfg.HostCAKey)
	if err != nil {
		return nil, fmt.Errorf("host_ca_key: %w", err)
	}
	if created {
		log.Info("host_ca_key_created", zap.String("path", cfg.HostCAKey), zap.String("fingerprint", ssh.FingerprintSHA256(hostCA.PublicKey())))
	}
	al, err := audit.Open(cfg.Audit.Log)
	if err != nil {
		return nil, err
	}
	providers, err := newProviders(ctx, cfg, log, al, awsCfg)
	if err != nil {
		al.Close()
		return nil, err
	}
	srv := &proxy.Server{
		HostKey:          hostKey,
		HostCA:           hostCA,
		Resolver:         &upstream.Resolver{Providers: providers},
		Logger:           log,
		Audit:            al,
		HandshakeTimeout: cfg.Limits.HandshakeTimeout.D(),
		DialTimeout:      cfg.Limits.DialTimeout.D(),
		AWSTimeout:       cfg.Limits.AWSTimeout.D(),
		MaxAuthTries:     cfg.Limits.MaxAuthTries,
	}
	srv.SetRules(rulesFrom(cfg))
	return &bastion{srv: srv, audit: al, log: log}, nil
}

func rulesFrom(cfg *config.Config) *proxy.Rules {
	return &proxy.Rules{Auth: auth.NewAuthenticator(cfg), Policy: auth.NewPolicy(cfg)}
}

// newProviders builds the providers cfg configures.
func newProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, awsCfg *aws.Config) ([]upstream.Provider, error) {
	var providers []upstream.Provider
	fromAWS, err := newAWSProviders(ctx, cfg, log, al, awsCfg)
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

// serve runs until ctx is done (SIGTERM, SIGINT), reloading the rules on
// SIGHUP, then drains.
func (b *bastion) serve(ctx context.Context, l net.Listener, path string) error {
	b.log.Info("listening", zap.String("addr", l.Addr().String()),
		zap.String("host_ca", string(ssh.MarshalAuthorizedKey(b.srv.HostCA.PublicKey()))))
	// The readiness line tests and scripts wait for.
	fmt.Fprintf(os.Stderr, "bastion: listening on %s\n", l.Addr())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- b.srv.Serve(l) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-hup:
			b.reload(path)
		case <-ctx.Done():
			b.log.Info("draining", zap.Int("connections", b.srv.ActiveConns()), zap.Duration("deadline", drainTimeout))
			sctx, cancel := context.WithTimeoutCause(context.Background(), drainTimeout, errors.New("drain deadline passed"))
			defer cancel()
			b.srv.Shutdown(sctx)
			<-errc
			return nil
		}
	}
}

// reload re-reads the config and swaps users and policies; an invalid file
// is logged and the old rules stay.
func (b *bastion) reload(path string) {
	cfg, err := config.Load(path)
	if err != nil {
		b.log.Error("reload_rejected", zap.Error(err))
		return
	}
	b.srv.SetRules(rulesFrom(cfg))
	b.log.Info("reloaded", zap.Int("users", len(cfg.Users)), zap.Int("policies", len(cfg.Policies)))
}

func (b *bastion) close() {
	b.srv.Close()
	b.audit.Close()
}
