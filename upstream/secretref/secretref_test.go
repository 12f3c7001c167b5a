package secretref

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	const (
		ssmARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/bastion/host_ed25519"
		smARN  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bastion/host_ca_ed25519-AbCdEf"
	)
	tests := []struct {
		name       string
		in         string
		want       Ref
		wantRegion string
		// wantErr is a part of the error; "" for success.
		wantErr string
	}{
		{name: "absolute file", in: "/run/secrets/bastion/host_ed25519", want: Ref{File, "/run/secrets/bastion/host_ed25519"}},
		{name: "relative file", in: "keys/host_ed25519", want: Ref{File, "keys/host_ed25519"}},
		{name: "file with a colon after a dot slash", in: "./a:b", want: Ref{File, "./a:b"}},
		{name: "file with a colon after a slash", in: "/etc/bastion/a:b", want: Ref{File, "/etc/bastion/a:b"}},
		{name: "ssm path", in: "ssm:/bastion/host_ed25519", want: Ref{SSM, "/bastion/host_ed25519"}},
		{name: "ssm flat name", in: "ssm:bastion_host_key", want: Ref{SSM, "bastion_host_key"}},
		{name: "ssm flat name with a slash", in: "ssm:/bastion-host.key", want: Ref{SSM, "/bastion-host.key"}},
		{name: "ssm version", in: "ssm:/bastion/host_ed25519:3", want: Ref{SSM, "/bastion/host_ed25519:3"}},
		{name: "ssm label", in: "ssm:/bastion/host_ed25519:prod", want: Ref{SSM, "/bastion/host_ed25519:prod"}},
		{name: "ssm arn", in: "ssm:" + ssmARN, want: Ref{SSM, ssmARN}, wantRegion: "eu-west-1"},
		{name: "ssm arn with version", in: "ssm:" + ssmARN + ":2", want: Ref{SSM, ssmARN + ":2"}, wantRegion: "eu-west-1"},
		{name: "ssm arn in china", in: "ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/k", want: Ref{SSM, "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/k"}, wantRegion: "cn-north-1"},
		{name: "secretsmanager name", in: "secretsmanager:bastion/host_ca_ed25519", want: Ref{SecretsManager, "bastion/host_ca_ed25519"}},
		{name: "secretsmanager name with symbols", in: "secretsmanager:prod/bastion+ca=1@x.y-z_", want: Ref{SecretsManager, "prod/bastion+ca=1@x.y-z_"}},
		{name: "secretsmanager arn", in: "secretsmanager:" + smARN, want: Ref{SecretsManager, smARN}, wantRegion: "eu-west-1"},

		{name: "empty", in: "", wantErr: "empty secret reference"},
		{name: "ssm without a name", in: "ssm:", wantErr: "no parameter name"},
		{name: "ssm path without its leading slash", in: "ssm:bastion/host", wantErr: "must start with /"},
		{name: "ssm double slash", in: "ssm://bastion/host", wantErr: "single slashes"},
		{name: "ssm trailing slash", in: "ssm:/bastion/", wantErr: "single slashes"},
		{name: "ssm space", in: "ssm:/bastion/host key", wantErr: "white space"},
		{name: "ssm leading space", in: "ssm: /bastion/host", wantErr: "white space"},
		{name: "ssm trailing newline", in: "ssm:/bastion/host\n", wantErr: "white space"},
		{name: "ssm empty selector", in: "ssm:/bastion/host:", wantErr: "version or label"},
		{name: "ssm too deep", in: "ssm:" + strings.Repeat("/a", 16), wantErr: "deeper than 15 levels"},
		{name: "ssm too long", in: "ssm:/" + strings.Repeat("a", 2048), wantErr: "longer than 2048"},
		{name: "ssm arn of secrets manager", in: "ssm:" + smARN, wantErr: "not an SSM parameter ARN"},
		{name: "ssm arn of no parameter", in: "ssm:arn:aws:ssm:eu-west-1:123456789012:document/x", wantErr: "not an SSM parameter ARN"},
		{name: "ssm arn without account", in: "ssm:arn:aws:ssm:eu-west-1::parameter/x", wantErr: "not an SSM parameter ARN"},
		{name: "secretsmanager without a name", in: "secretsmanager:", wantErr: "no secret name"},
		{name: "secretsmanager space", in: "secretsmanager:bastion/host key", wantErr: "white space"},
		{name: "secretsmanager bad character", in: "secretsmanager:bastion/host#1", wantErr: "want letters"},
		{name: "secretsmanager name too long", in: "secretsmanager:" + strings.Repeat("a", 513), wantErr: "longer than 512"},
		{name: "secretsmanager arn of ssm", in: "secretsmanager:" + ssmARN, wantErr: "not a Secrets Manager secret ARN"},
		{name: "secretsmanager arn of no secret", in: "secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:bastion", wantErr: "not a Secrets Manager secret ARN"},
		{name: "upper case ssm", in: "SSM:/bastion/host", wantErr: "lower case, ssm:"},
		{name: "upper case secretsmanager", in: "SecretsManager:bastion", wantErr: "lower case, secretsmanager:"},
		{name: "secretmanager typo", in: "secretmanager:bastion/host", wantErr: "unknown prefix secretmanager:"},
		{name: "sm shorthand", in: "sm:bastion/host", wantErr: "unknown prefix sm:"},
		{name: "url", in: "s3://bucket/key", wantErr: "unknown prefix s3:"},
		{name: "file name with a colon", in: "a:b", wantErr: "./a:b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q): got %+v, %v, want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): got error %v, want %+v", tc.in, err, tc.want)
			}
			if got != tc.want {
				t.Errorf("Parse(%q): got %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.String(); s != tc.in {
				t.Errorf("String: got %q, want %q", s, tc.in)
			}
			if got, want := got.IsAWS(), tc.want.Kind != File; got != want {
				t.Errorf("IsAWS: got %v, want %v", got, want)
			}
			if r := got.region(); r != tc.wantRegion {
				t.Errorf("region: got %q, want %q", r, tc.wantRegion)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		k    Kind
		want string
	}{
		{File, "file"},
		{SSM, "ssm"},
		{SecretsManager, "secretsmanager"},
		{Kind(7), "Kind(7)"},
	}
	for _, tc := range tests {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("Kind(%d).String(): got %q, want %q", int(tc.k), got, tc.want)
		}
	}
}

// FuzzParse checks that whatever Parse accepts prints back as it was
// written.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/etc/k", "ssm:/a/b:1", "secretsmanager:a/b", "ssm:arn:aws:ssm:us-east-1:123456789012:parameter/a", "x:y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if got := r.String(); got != s {
			t.Errorf("Parse(%q).String(): got %q, want %q", s, got, s)
		}
		if r2, err := Parse(r.String()); err != nil || r2 != r {
			t.Errorf("Parse(Parse(%q).String()): got %+v, %v, want %+v", s, r2, err, r)
		}
	})
}
