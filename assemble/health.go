package assemble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"bastion/config"
	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// credentialsRecheck is how often the AWS credentials are looked for again
// (they may appear, as an instance profile is attached, or go).
const credentialsRecheck = time.Minute

// providerHealth is what /readyz reports of each configured provider. The
// AWS providers can work only with credentials; watch asks the SDK's
// default chain for them at start and every credentialsRecheck.
type providerHealth struct {
	aws    []string // the configured AWS providers' names
	static int      // the number of static targets

	mu      sync.Mutex // protects checked and creds
	checked bool       // whether a look-up has finished
	creds   error      // its result: nil, or why there are no credentials
}

func newProviderHealth(cfg *config.Config) *providerHealth {
	h := &providerHealth{static: len(cfg.Providers.Static)}
	if cfg.Providers.Lightsail != nil {
		h.aws = append(h.aws, upstream.ProviderLightsail)
	}
	if cfg.Providers.EC2 != nil {
		h.aws = append(h.aws, upstream.ProviderEC2)
	}
	return h
}

// watch looks the AWS credentials up now and every credentialsRecheck
// until ctx is done, each time within timeout. When they are missing (at
// start, or after being there) it logs a warning and tells the operator on
// warn in one line.
func (h *providerHealth) watch(ctx context.Context, loader *awsLoader, timeout time.Duration, log *zap.Logger, warn io.Writer) {
	if len(h.aws) == 0 {
		return
	}
	t := time.NewTicker(credentialsRecheck)
	defer t.Stop()
	for {
		err := lookUpCredentials(ctx, loader, timeout)
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		was, wasChecked := h.creds, h.checked
		h.checked, h.creds = true, err
		h.mu.Unlock()
		switch {
		case err != nil && (was == nil || !wasChecked):
			log.Warn("aws_credentials_missing", zap.Strings("providers", h.aws), zap.Error(err))
			fmt.Fprintf(warn, "bastion: warning: no AWS credentials: the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws files, SSO, web identity/IRSA, container or instance profile) found none, so %v cannot work\n", h.aws)
		case err == nil && was != nil && wasChecked:
			log.Info("aws_credentials_found", zap.Strings("providers", h.aws))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lookUpCredentials asks the SDK's credentials chain for credentials.
func lookUpCredentials(ctx context.Context, loader *awsLoader, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := loader.load(ctx)
	if err != nil {
		return fmt.Errorf("loading the AWS config: %w", err)
	}
	if cfg.Credentials == nil {
		return awsutil.ErrNoCredentials
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if errors.Is(err, awsutil.ErrNoCredentials) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", awsutil.ErrNoCredentials, err)
	}
	if !c.HasKeys() {
		return awsutil.ErrNoCredentials
	}
	return nil
}

// report returns one line per provider ("ec2: ok", "lightsail: no AWS
// credentials") and an error naming the providers that cannot work (or
// whose check has not finished).
func (h *providerHealth) report() ([]string, error) {
	h.mu.Lock()
	checked, creds := h.checked, h.creds
	h.mu.Unlock()
	var lines []string
	var bad []string
	for _, name := range h.aws {
		switch {
		case !checked:
			lines = append(lines, name+": checking AWS credentials")
			bad = append(bad, name)
		case creds != nil:
			lines = append(lines, name+": "+awsutil.ErrNoCredentials.Error())
			bad = append(bad, name)
		default:
			lines = append(lines, name+": ok")
		}
	}
	if h.static > 0 {
		lines = append(lines, fmt.Sprintf("%s: ok (%d targets)", upstream.ProviderStatic, h.static))
	}
	if len(bad) > 0 {
		return lines, fmt.Errorf("providers %v cannot work", bad)
	}
	return lines, nil
}
