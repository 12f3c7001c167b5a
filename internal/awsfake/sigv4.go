package awsfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SigV4 constants (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
const (
	sigv4Algorithm  = "AWS4-HMAC-SHA256"
	sigv4Terminator = "aws4_request"
	amzDateFormat   = "20060102T150405Z"
	scopeDateFormat = "20060102"
	unsignedPayload = "UNSIGNED-PAYLOAD"
)

// authErrorKind classifies SigV4 failures; each protocol names them
// differently (see authAPIError).
type authErrorKind int

const (
	authMissing      authErrorKind = iota // no Authorization header
	authMalformed                         // Authorization or X-Amz-Date unparsable
	authUnknownKey                        // access key id not the server's
	authWrongService                      // credential scope names another service
	authBadSignature                      // signature does not match
)

// authError is a SigV4 verification failure.
type authError struct {
	kind authErrorKind
	msg  string
}

func (e *authError) Error() string { return e.msg }

// authAPIError converts a SigV4 failure to the protocol's AWS error.
func authAPIError(p protocol, err error) *apiError {
	var ae *authError
	if !errors.As(err, &ae) {
		return serverError(p)
	}
	if p == protoEC2 {
		switch ae.kind {
		case authBadSignature, authWrongService:
			return &apiError{http.StatusForbidden, "SignatureDoesNotMatch", ae.msg}
		default:
			return &apiError{http.StatusForbidden, "AuthFailure", ae.msg}
		}
	}
	code := map[authErrorKind]string{
		authMissing:      "MissingAuthenticationTokenException",
		authMalformed:    "IncompleteSignatureException",
		authUnknownKey:   "UnrecognizedClientException",
		authWrongService: "InvalidSignatureException",
		authBadSignature: "InvalidSignatureException",
	}[ae.kind]
	return &apiError{http.StatusForbidden, code, ae.msg}
}

// credentialScope is the parsed Credential= part of an Authorization header.
type credentialScope struct {
	accessKeyID, date, region, service string
}

func (c credentialScope) String() string {
	return strings.Join([]string{c.date, c.region, c.service, sigv4Terminator}, "/")
}

// sigv4Header is a parsed Authorization header.
type sigv4Header struct {
	scope         credentialScope
	signedHeaders []string
	signature     []byte
}

// parseScope returns the credential scope of an Authorization header, if it
// has one.
func parseScope(authz string) (credentialScope, bool) {
	h, err := parseAuthorization(authz)
	if err != nil {
		return credentialScope{}, false
	}
	return h.scope, true
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(authz string) (sigv4Header, error) {
	var h sigv4Header
	alg, rest, ok := strings.Cut(authz, " ")
	if !ok || alg != sigv4Algorithm {
		return h, fmt.Errorf("authorization header must use %s", sigv4Algorithm)
	}
	var haveCred, haveSigned, haveSig bool
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return h, fmt.Errorf("authorization header component %q is not key=value", part)
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != sigv4Terminator || slices.Contains(f, "") {
				return h, fmt.Errorf("credential %q is not AKID/DATE/REGION/SERVICE/%s", v, sigv4Terminator)
			}
			h.scope = credentialScope{accessKeyID: f[0], date: f[1], region: f[2], service: f[3]}
			haveCred = true
		case "SignedHeaders":
			h.signedHeaders = strings.Split(v, ";")
			haveSigned = true
		case "Signature":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return h, fmt.Errorf("signature %q is not 64 hex digits", v)
			}
			h.signature = sig
			haveSig = true
		}
	}
	if !haveCred || !haveSigned || !haveSig {
		return h, errors.New("authorization header needs Credential, SignedHeaders and Signature")
	}
	return h, nil
}

// verifySigV4 checks r's AWS Signature Version 4 against the server's
// credentials and returns the region of its credential scope. body is r's
// body, already read.
//
// The request time (X-Amz-Date) is not compared with the server's clock, so
// that tests may move Options.Now freely; it must agree with the date of the
// credential scope.
func (s *Server) verifySigV4(r *http.Request, body []byte, service string) (string, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", &authError{authMissing, "Missing Authentication Token"}
	}
	h, err := parseAuthorization(authz)
	if err != nil {
		return "", &authError{authMalformed, err.Error()}
	}
	sc := h.scope
	if sc.accessKeyID != s.opts.AccessKeyID {
		return sc.region, &authError{authUnknownKey, "The security token included in the request is invalid."}
	}
	if sc.service != service {
		return sc.region, &authError{authWrongService, fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service)}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return sc.region, &authError{authMalformed, fmt.Sprintf("X-Amz-Date %q is not in the form %s", amzDate, amzDateFormat)}
	}
	if t.Format(scopeDateFormat) != sc.date {
		return sc.region, &authError{authBadSignature, fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s'", sc.date, t.Format(scopeDateFormat))}
	}
	if !slices.Contains(h.signedHeaders, "host") {
		return sc.region, &authError{authMalformed, "SignedHeaders must include host"}
	}
	for _, name := range []string{"X-Amz-Date", "X-Amz-Security-Token"} {
		if r.Header.Get(name) != "" && !slices.Contains(h.signedHeaders, strings.ToLower(name)) {
			return sc.region, &authError{authMalformed, fmt.Sprintf("SignedHeaders must include %s", strings.ToLower(name))}
		}
	}

	payloadHash := hashHex(body)
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" {
		if ph != payloadHash && ph != unsignedPayload {
			return sc.region, &authError{authBadSignature, "The provided 'x-amz-content-sha256' header does not match what was computed."}
		}
		payloadHash = ph
	}

	canonical := strings.Join([]string{
		r.Method,
		canonicalURI(r.URL),
		canonicalQuery(r.URL),
		canonicalHeaders(r, h.signedHeaders),
		strings.Join(h.signedHeaders, ";"),
		payloadHash,
	}, "\n")
	stringToSign := strings.Join([]string{sigv4Algorithm, amzDate, sc.String(), hashHex([]byte(canonical))}, "\n")

	key := hmacSHA256([]byte("AWS4"+s.opts.SecretAccessKey), sc.date)
	key = hmacSHA256(key, sc.region)
	key = hmacSHA256(key, sc.service)
	key = hmacSHA256(key, sigv4Terminator)
	want := hmacSHA256(key, stringToSign)
	if !hmac.Equal(want, h.signature) {
		return sc.region, &authError{authBadSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
	}
	return sc.region, nil
}

// canonicalURI is the URI-encoded path; every segment is encoded again, as
// SigV4 does for all services but S3.
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return uriEncode(p, false)
}

// canonicalQuery is the query string sorted by name then value, each
// URI-encoded.
func canonicalQuery(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	var pairs []string
	for k, vs := range u.Query() {
		for _, v := range vs {
			pairs = append(pairs, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}

// canonicalHeaders renders the signed headers as "name:value\n" lines.
// net/http moves Host and Content-Length out of the header map, so they are
// taken from the request.
func canonicalHeaders(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, name := range signed {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = slices.Clone(r.Header.Values(name))
		}
		for i, v := range values {
			values[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(values, ","))
		b.WriteByte('\n')
	}
	return b.String()
}

// uriEncode percent-encodes s as SigV4 requires: every byte but the
// unreserved characters (and "/" unless encodeSlash).
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	return b.String()
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
