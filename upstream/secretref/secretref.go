// Package secretref names where a secret the bastion needs at start (its
// host key, its host CA key) is kept: a file, an AWS Systems Manager
// Parameter Store parameter, or an AWS Secrets Manager secret; and fetches
// the AWS ones.
//
// A reference is written as a config value:
//
//	/run/secrets/bastion/host_ed25519          a file
//	ssm:/bastion/host_ed25519                  a parameter (SecureString), by name
//	ssm:/bastion/host_ed25519:3                the same, version 3
//	ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/bastion/host_ed25519
//	secretsmanager:bastion/host_ca_ed25519     a secret, by name
//	secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:bastion/host_ca_ed25519-AbCdEf
//
// A value that starts with another scheme-like word and a colon ("sm:",
// "secretmanager:", "SSM:") is an error rather than a file name, so that a
// typo cannot make the bastion create a new key in a file of that name;
// write "./a:b" for a file whose name has a colon.
package secretref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Kind is where a secret is kept.
type Kind int

// The kinds of reference.
const (
	// File is a file path.
	File Kind = iota
	// SSM is an AWS Systems Manager Parameter Store parameter.
	SSM
	// SecretsManager is an AWS Secrets Manager secret.
	SecretsManager
)

// String returns the kind's name: "file", "ssm" or "secretsmanager".
func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case SSM:
		return "ssm"
	case SecretsManager:
		return "secretsmanager"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Prefixes of the AWS kinds in a config value.
const (
	PrefixSSM            = "ssm:"
	PrefixSecretsManager = "secretsmanager:"
)

// Ref is a parsed reference to a secret. The zero value is not valid.
type Ref struct {
	// Kind is where the secret is kept.
	Kind Kind
	// Name is, by Kind: the file path; the parameter name or ARN, with an
	// optional ":VERSION" or ":LABEL" selector (GetParameter's Name); the
	// secret name or ARN (GetSecretValue's SecretId).
	Name string
}

// Limits from the SSM and Secrets Manager API references.
const (
	maxSSMName    = 2048 // GetParameter Name, ARN and selector included
	maxSSMLevels  = 15   // path levels of a parameter name
	maxSecretID   = 2048 // GetSecretValue SecretId
	maxSecretName = 512  // a secret's name
)

var (
	// schemeRe matches what looks like a URI scheme at the start of a
	// value.
	schemeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	// ssmSegmentRe is one path level of a parameter name.
	ssmSegmentRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// ssmSelectorRe is a version number or a label.
	ssmSelectorRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	// secretNameRe is a secret's name (or the end of its ARN).
	secretNameRe = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)
	// arnRe is "arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE".
	arnRe = regexp.MustCompile(`^arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]+):(\d{12}):(.+)$`)
)

// Parse parses a config value: a file path, "ssm:" and a parameter name or
// ARN, or "secretsmanager:" and a secret name or ARN. It checks the names
// against the services' naming rules, so that a mistake shows at start (and
// in check-config) rather than as a ParameterNotFound.
func Parse(s string) (Ref, error) {
	if s == "" {
		return Ref{}, errors.New("empty secret reference")
	}
	if name, ok := strings.CutPrefix(s, PrefixSSM); ok {
		if err := checkSSMName(name); err != nil {
			return Ref{}, fmt.Errorf("secret reference %q: %w", s, err)
		}
		return Ref{Kind: SSM, Name: name}, nil
	}
	if name, ok := strings.CutPrefix(s, PrefixSecretsManager); ok {
		if err := checkSecretID(name); err != nil {
			return Ref{}, fmt.Errorf("secret reference %q: %w", s, err)
		}
		return Ref{Kind: SecretsManager, Name: name}, nil
	}
	if scheme := schemeRe.FindString(s); scheme != "" {
		switch strings.ToLower(scheme) {
		case PrefixSSM, PrefixSecretsManager:
			return Ref{}, fmt.Errorf("secret reference %q: write the prefix in lower case, %s", s, strings.ToLower(scheme))
		}
		return Ref{}, fmt.Errorf("secret reference %q: unknown prefix %s, want %s, %s or a file path (./%s for a file of that name)",
			s, scheme, PrefixSSM, PrefixSecretsManager, s)
	}
	return Ref{Kind: File, Name: s}, nil
}

// IsAWS reports whether r is kept in AWS (SSM or Secrets Manager) rather
// than in a file.
func (r Ref) IsAWS() bool { return r.Kind == SSM || r.Kind == SecretsManager }

// String returns r as written in a config value; Parse(r.String()) is r.
func (r Ref) String() string {
	switch r.Kind {
	case SSM:
		return PrefixSSM + r.Name
	case SecretsManager:
		return PrefixSecretsManager + r.Name
	}
	return r.Name
}

// region returns the region of r's ARN, "" if r is not an ARN.
func (r Ref) region() string {
	if m := arnRe.FindStringSubmatch(r.Name); m != nil {
		return m[3]
	}
	return ""
}

// checkSSMName checks a GetParameter Name: a parameter name or ARN with an
// optional selector.
func checkSSMName(name string) error {
	if name == "" {
		return errors.New("no parameter name")
	}
	if len(name) > maxSSMName {
		return fmt.Errorf("parameter name longer than %d characters", maxSSMName)
	}
	if strings.ContainsFunc(name, unicode.IsSpace) {
		return errors.New("white space in the parameter name")
	}
	path := name
	if strings.HasPrefix(name, "arn:") {
		m := arnRe.FindStringSubmatch(name)
		if m == nil || m[2] != "ssm" {
			return errors.New("not an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)")
		}
		res, ok := strings.CutPrefix(m[5], "parameter/")
		if !ok {
			return errors.New("not an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)")
		}
		// The ARN leaves out the leading slash of a name with a path.
		path = "/" + res
	}
	path, selector, hasSelector := strings.Cut(path, ":")
	if hasSelector && !ssmSelectorRe.MatchString(selector) {
		return fmt.Errorf("version or label %q: want digits, or letters, digits, '.', '-' and '_'", selector)
	}
	if strings.Contains(path, "/") && !strings.HasPrefix(path, "/") {
		return errors.New("a parameter name with a path must start with /")
	}
	segments := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segments) > maxSSMLevels {
		return fmt.Errorf("parameter name deeper than %d levels", maxSSMLevels)
	}
	for _, seg := range segments {
		if !ssmSegmentRe.MatchString(seg) {
			return fmt.Errorf("parameter name %q: want levels of letters, digits, '.', '-' and '_' separated by single slashes", path)
		}
	}
	return nil
}

// checkSecretID checks a GetSecretValue SecretId: a secret name or ARN.
func checkSecretID(id string) error {
	if id == "" {
		return errors.New("no secret name")
	}
	if len(id) > maxSecretID {
		return fmt.Errorf("secret id longer than %d characters", maxSecretID)
	}
	if strings.ContainsFunc(id, unicode.IsSpace) {
		return errors.New("white space in the secret name")
	}
	name, maxName := id, maxSecretName
	if strings.HasPrefix(id, "arn:") {
		m := arnRe.FindStringSubmatch(id)
		if m == nil || m[2] != "secretsmanager" {
			return errors.New("not a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)")
		}
		res, ok := strings.CutPrefix(m[5], "secret:")
		if !ok {
			return errors.New("not a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)")
		}
		// A full ARN adds "-" and six random characters to the name.
		name, maxName = res, maxSecretName+7
	}
	if len(name) > maxName {
		return fmt.Errorf("secret name longer than %d characters", maxSecretName)
	}
	if !secretNameRe.MatchString(name) {
		return fmt.Errorf("secret name %q: want letters, digits and /_+=.@-", name)
	}
	return nil
}
