package upstream

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		typed   string
		want    Query
		wantErr bool
	}{
		{typed: "web-1", want: Query{Name: "web-1"}},
		{typed: "web-1.lightsail", want: Query{Name: "web-1", Provider: "lightsail"}},
		{typed: "web-1.us-east-1.lightsail", want: Query{Name: "web-1", Provider: "lightsail", Region: "us-east-1"}},
		{typed: "web-1.eu-west-1.ec2", want: Query{Name: "web-1", Provider: "ec2", Region: "eu-west-1"}},
		{typed: "web-1.ec2", want: Query{Name: "web-1", Provider: "ec2"}},
		{typed: "i-0123456789abcdef0", want: Query{Name: "i-0123456789abcdef0", Provider: "ec2"}},
		{typed: "i-0123456789abcdef0.ec2", want: Query{Name: "i-0123456789abcdef0", Provider: "ec2"}},
		{typed: "i-0123abcd", want: Query{Name: "i-0123abcd", Provider: "ec2"}},
		{typed: "legacy-db.static", want: Query{Name: "legacy-db", Provider: "static"}},
		{typed: "db.internal.example", want: Query{Name: "db.internal.example"}},
		{typed: "app.prod.us-gov-west-1.ec2", want: Query{Name: "app.prod", Provider: "ec2", Region: "us-gov-west-1"}},
		{typed: "Web-1.LIGHTSAIL", want: Query{Name: "Web-1", Provider: "lightsail"}},
		{typed: "", wantErr: true},
		{typed: ".lightsail", wantErr: true},
		{typed: "web 1", wantErr: true},
		{typed: "web-1:22", wantErr: true},
		{typed: "-oProxyCommand=x", wantErr: true},
		{typed: "i-0123456789abcdef0.lightsail", wantErr: true},
		{typed: "db.us-east-1.static", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.typed, func(t *testing.T) {
			got, err := ParseQuery(tc.typed)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseQuery(%q) = %+v, want an error", tc.typed, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tc.typed, err)
			}
			if got != tc.want {
				t.Errorf("ParseQuery(%q) = %+v, want %+v", tc.typed, got, tc.want)
			}
		})
	}
}

type fakeProvider struct {
	name    string
	targets []Target
	err     error
}

func (f *fakeProvider) Name() string { return f.name }

func (f *fakeProvider) Resolve(_ context.Context, q Query) ([]Target, error) {
	var out []Target
	for _, t := range f.targets {
		if t.Name == q.Name && (q.Region == "" || q.Region == t.Region) {
			out = append(out, t)
		}
	}
	return out, f.err
}

func (f *fakeProvider) Credentials(context.Context, Target, string) (*Credentials, error) {
	return nil, errors.New("not implemented")
}

func TestResolver(t *testing.T) {
	ls := &fakeProvider{name: ProviderLightsail, targets: []Target{
		{Provider: ProviderLightsail, Name: "web-1", Region: "us-east-1"},
		{Provider: ProviderLightsail, Name: "db", Region: "us-east-1"},
	}}
	ec2 := &fakeProvider{name: ProviderEC2, targets: []Target{
		{Provider: ProviderEC2, Name: "web-1", ID: "i-0123456789abcdef0", Region: "eu-west-1"},
	}}
	broken := &fakeProvider{name: ProviderEC2, err: errors.New("aws down")}
	tests := []struct {
		name      string
		providers []Provider
		typed     string
		want      string
		wantErr   error
	}{
		{name: "unique", providers: []Provider{ls, ec2}, typed: "db", want: "db.us-east-1.lightsail"},
		{name: "ambiguous", providers: []Provider{ls, ec2}, typed: "web-1", wantErr: ErrAmbiguous},
		{name: "provider suffix", providers: []Provider{ls, ec2}, typed: "web-1.ec2", want: "web-1.eu-west-1.ec2"},
		{name: "region suffix", providers: []Provider{ls, ec2}, typed: "web-1.us-east-1.lightsail", want: "web-1.us-east-1.lightsail"},
		{name: "wrong region", providers: []Provider{ls, ec2}, typed: "web-1.eu-west-1.lightsail", wantErr: ErrNotFound},
		{name: "missing", providers: []Provider{ls, ec2}, typed: "nope", wantErr: ErrNotFound},
		{name: "failure beats not found", providers: []Provider{ls, broken}, typed: "nope", wantErr: broken.err},
		{name: "found despite a failure", providers: []Provider{ls, broken}, typed: "db", want: "db.us-east-1.lightsail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ParseQuery(tc.typed)
			if err != nil {
				t.Fatal(err)
			}
			r := &Resolver{Providers: tc.providers}
			got, err := r.Resolve(context.Background(), q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want %v", tc.typed, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.typed, err)
			}
			if got.String() != tc.want {
				t.Errorf("Resolve(%q) = %s, want %s", tc.typed, got, tc.want)
			}
		})
	}
	var ae *AmbiguousError
	_, err := (&Resolver{Providers: []Provider{ls, ec2}}).Resolve(context.Background(), Query{Name: "web-1"})
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want *AmbiguousError", err)
	}
	if got, want := ae.Error(), "web-1 is ambiguous, type one of: web-1.eu-west-1.ec2, web-1.us-east-1.lightsail"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseQueryNameCap(t *testing.T) {
	tests := []struct {
		name    string
		typed   string
		wantErr bool
	}{
		{"at the cap", strings.Repeat("a", MaxNameLen), false},
		{"at the cap with a suffix", strings.Repeat("a", MaxNameLen-len(".ec2")) + ".ec2", false},
		{"one over", strings.Repeat("a", MaxNameLen+1), true},
		{"200 KB", strings.Repeat("a", 200<<10), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuery(tc.typed)
			if got := errors.Is(err, ErrNameTooLong); got != tc.wantErr {
				t.Fatalf("ParseQuery of %d bytes: got %v, want ErrNameTooLong %v", len(tc.typed), err, tc.wantErr)
			}
			if err != nil && len(err.Error()) > 100 {
				t.Errorf("error of %d bytes: %.100q…; want a short one that does not quote the name", len(err.Error()), err)
			}
		})
	}
}
