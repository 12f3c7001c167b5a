package assemble

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"bastion/config"
)

// failingCredentials finds no credentials, as the SDK's chain does on a
// machine without any.
type failingCredentials struct{}

func (failingCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("no EC2 IMDS role found")
}

func TestProviderHealth(t *testing.T) {
	cfg := &config.Config{Providers: config.Providers{Lightsail: &config.Lightsail{}, EC2: &config.EC2{}, Static: []config.Static{{Name: "db"}}}}
	h := newProviderHealth(cfg)
	if _, err := h.report(); err == nil {
		t.Errorf("before the first look-up: got ready, want not ready")
	}
	var warn bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.watch(ctx, &awsLoader{given: &aws.Config{Credentials: failingCredentials{}}}, time.Second, zap.NewNop(), &warn)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines, err := h.report()
		if strings.Join(lines, "\n") == "lightsail: no AWS credentials\nec2: no AWS credentials\nstatic: ok (1 targets)" && err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report: got %q, %v", lines, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(warn.String(), "bastion: warning: no AWS credentials") {
		t.Errorf("warning: got %q", warn.String())
	}
}
