package awsfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServiceSSM is the SigV4 service name and Call.Service of AWS Systems
// Manager (Parameter Store).
const ServiceSSM = "ssm"

// ssmTargetPrefix starts the X-Amz-Target of every SSM operation
// (awsJson1_1, "AmazonSSM.GetParameter").
const ssmTargetPrefix = "AmazonSSM."

// ssmAPI is the fake's Parameter Store.
var ssmAPI = &api{
	service:    ServiceSSM,
	proto:      protoJSON,
	messageKey: "message",
	ops: map[string]handlerFunc{
		"GetParameter": (*Server).getParameter,
	},
}

// SSM parameter types (the ParameterType enum).
const (
	ParameterTypeString       = "String"
	ParameterTypeStringList   = "StringList"
	ParameterTypeSecureString = "SecureString"
)

// ssmMaxNameLength is the longest Name GetParameter accepts (a name, an ARN
// or either with a ":version" selector).
const ssmMaxNameLength = 2048

// ssmParameterVersion is one stored value of a parameter.
type ssmParameterVersion struct {
	value    string
	typ      string
	modified time.Time
}

// ssmParameter is a stored parameter. versions[i] is version i+1; the last
// one is current.
type ssmParameter struct {
	versions []ssmParameterVersion
}

// PutParameter stores value as a SecureString parameter called name (for
// example "/bastion/host_ed25519"), as `aws ssm put-parameter --type
// SecureString --overwrite` does: a new parameter starts at version 1, and
// storing again adds the next version. Parameters are not partitioned by
// region: GetParameter finds them whatever the region of its signature, and
// reports the ARN in that region.
//
// GetParameter returns the value only with WithDecryption set; without it,
// the value is an opaque stand-in for the KMS ciphertext.
func (s *Server) PutParameter(name, value string) {
	s.PutParameterType(name, ParameterTypeSecureString, value)
}

// PutParameterType is PutParameter for a parameter of type typ
// (ParameterTypeString, ParameterTypeStringList or
// ParameterTypeSecureString; if empty, SecureString). Storing a parameter
// again with another type replaces its type, as an overwrite does.
func (s *Server) PutParameterType(name, typ, value string) {
	if typ == "" {
		typ = ParameterTypeSecureString
	}
	v := ssmParameterVersion{value: value, typ: typ, modified: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parameters == nil {
		s.parameters = make(map[string]*ssmParameter)
	}
	p := s.parameters[name]
	if p == nil {
		p = &ssmParameter{}
		s.parameters[name] = p
	}
	p.versions = append(p.versions, v)
}

// The JSON shape below follows com.amazonaws.ssm (the SDK's
// service/ssm/schemas).

type ssmParameterOut struct {
	ARN              string       `json:"ARN"`
	DataType         string       `json:"DataType"`
	LastModifiedDate epochSeconds `json:"LastModifiedDate"`
	Name             string       `json:"Name"`
	Selector         string       `json:"Selector,omitempty"`
	Type             string       `json:"Type"`
	Value            string       `json:"Value"`
	Version          int          `json:"Version"`
}

// ssmParameterNotFound is SSM's answer for a parameter that does not
// exist: HTTP 400 with the bare error type and no message, which the CLI
// shows as "An error occurred (ParameterNotFound) when calling the
// GetParameter operation: ".
func ssmParameterNotFound() error {
	return &apiError{http.StatusBadRequest, "ParameterNotFound", ""}
}

// getParameter implements SSM GetParameter. Name is a parameter name or
// ARN, optionally followed by ":VERSION"; labels are not supported (no
// parameter has one).
func (s *Server) getParameter(req *request) (any, error) {
	var in struct {
		Name           *string `json:"Name"`
		WithDecryption *bool   `json:"WithDecryption"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, ssmValidation("1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null")
	}
	// SSM trims spaces around the name and rejects them inside it.
	raw := strings.TrimSpace(*in.Name)
	if n := len(raw); n < 1 || n > ssmMaxNameLength {
		return nil, ssmValidation(fmt.Sprintf("1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must have length between 1 and %d", raw, ssmMaxNameLength))
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return nil, ssmValidation("Parameter name: can't contain spaces.")
	}

	names, selector, ok := ssmParseName(raw, req.region)
	if !ok {
		return nil, ssmParameterNotFound()
	}
	s.mu.Lock()
	var name string
	var p *ssmParameter
	for _, n := range names {
		if p = s.parameters[n]; p != nil {
			name = n
			break
		}
	}
	var v ssmParameterVersion
	var version int
	if p != nil {
		version = len(p.versions)
		if selector != "" {
			// A selector that is no number is a label, and the fake's
			// parameters have none.
			n, err := strconv.Atoi(selector)
			if err != nil {
				p = nil
			}
			version = n
		}
		if p != nil && version >= 1 && version <= len(p.versions) {
			v = p.versions[version-1]
		}
	}
	s.mu.Unlock()

	switch {
	case p == nil:
		return nil, ssmParameterNotFound()
	case v.typ == "":
		return nil, &apiError{http.StatusBadRequest, "ParameterVersionNotFound",
			fmt.Sprintf("Systems Manager could not find version %s of %s. Verify the version and try again.", selector, name)}
	}

	value := v.value
	if v.typ == ParameterTypeSecureString && (in.WithDecryption == nil || !*in.WithDecryption) {
		value = s.fakeCiphertext(name, version, v.value)
	}
	out := ssmParameterOut{
		ARN:              ssmParameterARN(req.region, name),
		DataType:         "text",
		LastModifiedDate: epochSeconds{v.modified},
		Name:             name,
		Type:             v.typ,
		Value:            value,
		Version:          version,
	}
	if selector != "" {
		out.Selector = ":" + selector
	}
	return struct {
		Parameter ssmParameterOut `json:"Parameter"`
	}{out}, nil
}

func ssmValidation(msg string) error {
	return &apiError{http.StatusBadRequest, "ValidationException", msg}
}

// ssmParseName splits GetParameter's Name into the parameter names it may
// mean and its version selector (without the colon). An ARN
// "arn:aws:ssm:REGION:ACCOUNT:parameter/a/b" means "/a/b" (a name with a
// path keeps its leading slash in the name but not in the ARN); with one
// path element it may mean "a" or "/a". ok is false for an ARN of another
// account or region, or of something other than a parameter.
func ssmParseName(raw, region string) (names []string, selector string, ok bool) {
	if rest, isARN := strings.CutPrefix(raw, "arn:"); isARN {
		// PARTITION:ssm:REGION:ACCOUNT:parameter/NAME[:SELECTOR]
		f := strings.SplitN(rest, ":", 5)
		if len(f) != 5 || f[1] != ServiceSSM || f[2] != region || f[3] != fakeAccountID {
			return nil, "", false
		}
		res, found := strings.CutPrefix(f[4], "parameter/")
		if !found || res == "" {
			return nil, "", false
		}
		res, selector, _ = strings.Cut(res, ":")
		if strings.Contains(res, "/") {
			return []string{"/" + res}, selector, true
		}
		return []string{res, "/" + res}, selector, true
	}
	name, selector, _ := strings.Cut(raw, ":")
	return []string{name}, selector, true
}

// ssmParameterARN is the ARN of parameter name in region.
func ssmParameterARN(region, name string) string {
	return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", region, fakeAccountID, strings.TrimPrefix(name, "/"))
}

// fakeCiphertext stands in for the KMS ciphertext that GetParameter returns
// for a SecureString without WithDecryption: base64, deterministic per
// version, and useless without the server's secret.
func (s *Server) fakeCiphertext(name string, version int, value string) string {
	m := hmac.New(sha256.New, []byte(s.opts.SecretAccessKey))
	fmt.Fprintf(m, "%s\x00%d\x00%s", name, version, value)
	// KMS ciphertext blobs of the AWS managed key start with 0x01 0x02 0x02.
	return base64.StdEncoding.EncodeToString(append([]byte{1, 2, 2, 0}, m.Sum(nil)...))
}
