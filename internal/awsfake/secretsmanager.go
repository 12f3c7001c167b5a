package awsfake

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ServiceSecretsManager is the SigV4 service name and Call.Service of AWS
// Secrets Manager.
const ServiceSecretsManager = "secretsmanager"

// secretsManagerTargetPrefix starts the X-Amz-Target of every Secrets
// Manager operation (awsJson1_1, "secretsmanager.GetSecretValue").
const secretsManagerTargetPrefix = "secretsmanager."

// secretsManagerAPI is the fake's Secrets Manager.
var secretsManagerAPI = &api{
	service:    ServiceSecretsManager,
	proto:      protoJSON,
	messageKey: "Message",
	ops: map[string]handlerFunc{
		"GetSecretValue": (*Server).getSecretValue,
	},
}

// Staging labels Secrets Manager moves on every new value.
const (
	StageCurrent  = "AWSCURRENT"
	StagePrevious = "AWSPREVIOUS"
)

// smMaxSecretIDLength is the longest SecretId GetSecretValue accepts.
const smMaxSecretIDLength = 2048

// smSecretVersion is one stored value of a secret: exactly one of str and
// bin is set (bin non-nil for a binary secret).
type smSecretVersion struct {
	id      string
	str     string
	bin     []byte
	created time.Time
}

// smSecret is a stored secret. versions are in order of creation; the last
// one is AWSCURRENT and the one before it AWSPREVIOUS.
type smSecret struct {
	// suffix is the "-" and six random characters Secrets Manager appends
	// to the name in the secret's ARN.
	suffix   string
	created  time.Time
	versions []smSecretVersion
}

// PutSecret stores value as the SecretString of the secret called name (for
// example "bastion/host_ed25519"), as `aws secretsmanager create-secret`
// does the first time and `put-secret-value` afterwards: the new version
// gets AWSCURRENT and the version that had it gets AWSPREVIOUS. Secrets are
// not partitioned by region: GetSecretValue finds them whatever the region
// of its signature, and reports the ARN in that region. It returns the new
// version's id.
func (s *Server) PutSecret(name, value string) string {
	return s.putSecret(name, smSecretVersion{str: value})
}

// PutSecretBinary is PutSecret for a SecretBinary value.
func (s *Server) PutSecretBinary(name string, value []byte) string {
	return s.putSecret(name, smSecretVersion{bin: append([]byte{}, value...)})
}

func (s *Server) putSecret(name string, v smSecretVersion) string {
	v.id = newRequestID()
	v.created = s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = make(map[string]*smSecret)
	}
	sec := s.secrets[name]
	if sec == nil {
		sec = &smSecret{suffix: "-" + rand.Text()[:6], created: v.created}
		s.secrets[name] = sec
	}
	sec.versions = append(sec.versions, v)
	return v.id
}

// The JSON shape below follows com.amazonaws.secretsmanager (the SDK's
// service/secretsmanager/schemas). SecretBinary is a blob: []byte marshals
// as base64, as the protocol wants.

type smGetSecretValueOut struct {
	ARN           string       `json:"ARN"`
	CreatedDate   epochSeconds `json:"CreatedDate"`
	Name          string       `json:"Name"`
	SecretBinary  []byte       `json:"SecretBinary,omitempty"`
	SecretString  *string      `json:"SecretString,omitempty"`
	VersionID     string       `json:"VersionId"`
	VersionStages []string     `json:"VersionStages"`
}

// smNotFound is Secrets Manager's answer for a secret or version that does
// not exist.
func smNotFound(msg string) error {
	return &apiError{http.StatusBadRequest, "ResourceNotFoundException", msg}
}

const smSecretNotFound = "Secrets Manager can't find the specified secret."

// getSecretValue implements Secrets Manager GetSecretValue. SecretId is the
// secret's name, its ARN, or its ARN without the random suffix; VersionId
// and VersionStage (AWSCURRENT if neither is given) select the version.
func (s *Server) getSecretValue(req *request) (any, error) {
	var in struct {
		SecretID     *string `json:"SecretId"`
		VersionID    *string `json:"VersionId"`
		VersionStage *string `json:"VersionStage"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if in.SecretID == nil {
		return nil, &apiError{http.StatusBadRequest, "ValidationException",
			"1 validation error detected: Value null at 'secretId' failed to satisfy constraint: Member must not be null"}
	}
	if n := len(*in.SecretID); n < 1 || n > smMaxSecretIDLength {
		return nil, &apiError{http.StatusBadRequest, "ValidationException",
			fmt.Sprintf("1 validation error detected: Value at 'secretId' failed to satisfy constraint: Member must have length between 1 and %d", smMaxSecretIDLength)}
	}

	s.mu.Lock()
	name, sec := s.findSecret(*in.SecretID, req.region)
	var sec2 smSecret
	if sec != nil {
		sec2 = *sec
		sec2.versions = slices.Clone(sec.versions)
	}
	s.mu.Unlock()
	if sec == nil {
		return nil, smNotFound(smSecretNotFound)
	}

	stages := func(i int) []string {
		switch i {
		case len(sec2.versions) - 1:
			return []string{StageCurrent}
		case len(sec2.versions) - 2:
			return []string{StagePrevious}
		}
		return []string{}
	}
	idx := -1
	switch {
	case in.VersionID != nil:
		idx = slices.IndexFunc(sec2.versions, func(v smSecretVersion) bool { return v.id == *in.VersionID })
		if idx < 0 {
			return nil, smNotFound("Secrets Manager can't find the specified secret value for VersionId: " + *in.VersionID)
		}
		if in.VersionStage != nil && !slices.Contains(stages(idx), *in.VersionStage) {
			return nil, &apiError{http.StatusBadRequest, "InvalidRequestException",
				"You provided a VersionStage that is not associated to the provided VersionId."}
		}
	default:
		stage := StageCurrent
		if in.VersionStage != nil {
			stage = *in.VersionStage
		}
		for i := range sec2.versions {
			if slices.Contains(stages(i), stage) {
				idx = i
			}
		}
		if idx < 0 {
			return nil, smNotFound("Secrets Manager can't find the specified secret value for staging label: " + stage)
		}
	}

	v := sec2.versions[idx]
	out := smGetSecretValueOut{
		ARN:           smSecretARN(req.region, name, sec2.suffix),
		CreatedDate:   epochSeconds{v.created},
		Name:          name,
		VersionID:     v.id,
		VersionStages: stages(idx),
	}
	if v.bin != nil {
		out.SecretBinary = v.bin
	} else {
		out.SecretString = &v.str
	}
	return out, nil
}

// findSecret returns the secret id names: a name, a full ARN, or an ARN
// without the random suffix (a "partial ARN"). An ARN must be of the fake's
// account and of region. s.mu must be held.
func (s *Server) findSecret(id, region string) (string, *smSecret) {
	rest, isARN := strings.CutPrefix(id, "arn:")
	if !isARN {
		return id, s.secrets[id]
	}
	// PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME[-SUFFIX]
	f := strings.SplitN(rest, ":", 6)
	if len(f) != 6 || f[1] != ServiceSecretsManager || f[2] != region || f[3] != fakeAccountID || f[4] != "secret" {
		return "", nil
	}
	res := f[5]
	if sec := s.secrets[res]; sec != nil {
		return res, sec
	}
	for name, sec := range s.secrets {
		if res == name+sec.suffix {
			return name, sec
		}
	}
	return "", nil
}

// smSecretARN is the ARN of secret name in region.
func smSecretARN(region, name, suffix string) string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s%s", region, fakeAccountID, name, suffix)
}
