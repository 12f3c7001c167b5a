package build_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"bastion/config"
	"bastion/upstream"
	"bastion/upstream/build"
	_ "bastion/upstream/builtin"
	"bastion/upstream/provider"
)

func TestRegisterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, kind, want string
	}{
		{"no descriptor", "nosuchkind", `provider kind "nosuchkind" has no descriptor`},
		{"twice", provider.NameStatic, `provider kind "static" registered twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), tc.want) {
					t.Errorf("Register(%q): panic %v, want %q", tc.kind, r, tc.want)
				}
			}()
			build.Register(tc.kind, func(context.Context, build.Env) (upstream.Provider, error) { return nil, nil })
		})
	}
}

func TestBuiltinsRegistered(t *testing.T) {
	for _, d := range provider.All() {
		if !build.Registered(d.Name) {
			t.Errorf("provider kind %s has no constructor", d.Name)
		}
	}
}

func TestProvidersNamesSectionAndSkipsUnconfigured(t *testing.T) {
	// Nothing configured: no provider, and AWS is never asked.
	env := build.Env{Config: &config.Config{}, Files: true, AWS: nil}
	ps, err := build.Providers(t.Context(), env)
	if err != nil || len(ps) != 0 {
		t.Fatalf("empty config: %d providers, %v", len(ps), err)
	}
	// A static host whose key file is missing: the error names the section
	// and the host; without Files it is not read at all.
	env.Config.Providers.Static = []config.Static{{Name: "db", Address: "127.0.0.1:22", User: "u", PrivateKey: "/nonexistent/key"}}
	if _, err := build.Providers(t.Context(), env); err == nil || !strings.HasPrefix(err.Error(), "providers.static: db: ") {
		t.Errorf("missing key file: got %v, want it under providers.static: db", err)
	}
	env.Files = false
	if ps, err := build.Providers(t.Context(), env); err != nil || len(ps) != 0 {
		t.Errorf("without Files: %d providers, %v; want none", len(ps), err)
	}
	// An AWS kind asks for the SDK config, and its failure names the
	// section.
	env.Config.Providers.Lightsail = &config.Lightsail{Regions: []string{"us-east-1"}}
	wantErr := errors.New("no credentials here")
	env.AWS = func(context.Context) (aws.Config, error) { return aws.Config{}, wantErr }
	if _, err := build.Providers(t.Context(), env); !errors.Is(err, wantErr) || !strings.HasPrefix(err.Error(), "providers.lightsail: ") {
		t.Errorf("AWS config failing: got %v, want it under providers.lightsail", err)
	}
}
