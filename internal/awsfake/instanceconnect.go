package awsfake

import (
	"bytes"
	"crypto/rsa"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

type pushKey struct{ instanceID, osUser string }

// pushedKey is a key pushed with SendSSHPublicKey.
type pushedKey struct {
	key     ssh.PublicKey
	expires time.Time
}

// Input constraints of SendSSHPublicKey, from the service model.
var (
	eicInstanceIDPattern = regexp.MustCompile(`^i-[a-f0-9]{8,30}$`)
	eicOSUserPattern     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`)
	eicZonePattern       = regexp.MustCompile(`^(\w+-){2,3}\d+\w+$`)
)

// eicKeyTypes are the key types Instance Connect accepts.
var eicKeyTypes = []string{
	ssh.KeyAlgoRSA,
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256,
	ssh.KeyAlgoECDSA384,
	ssh.KeyAlgoECDSA521,
}

func eicInvalidArgs(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "InvalidArgsException", fmt.Sprintf(format, args...)}
}

// sendSSHPublicKey implements EC2 Instance Connect SendSSHPublicKey: after
// validating the input as AWS does, it remembers the key for (instance, OS
// user) for Options.PushedKeyTTL.
func (s *Server) sendSSHPublicKey(req *request) (any, error) {
	var in struct {
		InstanceID       string `json:"InstanceId"`
		InstanceOSUser   string `json:"InstanceOSUser"`
		SSHPublicKey     string `json:"SSHPublicKey"`
		AvailabilityZone string `json:"AvailabilityZone"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if !eicInstanceIDPattern.MatchString(in.InstanceID) {
		return nil, eicInvalidArgs("Invalid instance ID: %q", in.InstanceID)
	}
	if len(in.InstanceOSUser) > 32 || !eicOSUserPattern.MatchString(in.InstanceOSUser) {
		return nil, eicInvalidArgs("Invalid OS user: %q", in.InstanceOSUser)
	}
	if in.AvailabilityZone != "" && (len(in.AvailabilityZone) < 6 || len(in.AvailabilityZone) > 32 || !eicZonePattern.MatchString(in.AvailabilityZone)) {
		return nil, eicInvalidArgs("Invalid availability zone: %q", in.AvailabilityZone)
	}
	if n := len(in.SSHPublicKey); n < 80 || n > 4096 {
		return nil, eicInvalidArgs("SSH public key length %d is not between 80 and 4096 characters", n)
	}
	key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(in.SSHPublicKey))
	if err != nil || len(bytes.TrimSpace(rest)) > 0 {
		return nil, eicInvalidArgs("Invalid SSH public key")
	}
	if !slices.Contains(eicKeyTypes, key.Type()) {
		return nil, eicInvalidArgs("Unsupported SSH public key type %s; use ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp*", key.Type())
	}
	if ck, ok := key.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
			return nil, eicInvalidArgs("RSA key size %d is too small; the minimum is 2048 bits", rk.N.BitLen())
		}
	}

	e, ok := s.ec2Instance(req.region, in.InstanceID)
	if !ok {
		return nil, &apiError{http.StatusBadRequest, "EC2InstanceNotFoundException", fmt.Sprintf("Instance %s not found", in.InstanceID)}
	}
	if in.AvailabilityZone != "" && in.AvailabilityZone != e.in.AvailabilityZone {
		return nil, eicInvalidArgs("Instance %s is not in availability zone %s", in.InstanceID, in.AvailabilityZone)
	}
	if e.in.State != "running" {
		return nil, &apiError{http.StatusBadRequest, "EC2InstanceStateInvalidException",
			fmt.Sprintf("Instance %s is in state %s; it must be running", in.InstanceID, e.in.State)}
	}

	now := s.now()
	pk := pushKey{in.InstanceID, in.InstanceOSUser}
	s.mu.Lock()
	s.pushed[pk] = append(s.validPushedLocked(pk, now), pushedKey{key: key, expires: now.Add(s.opts.PushedKeyTTL)})
	s.mu.Unlock()

	return struct {
		RequestID string `json:"RequestId"`
		Success   bool   `json:"Success"`
	}{req.requestID, true}, nil
}

// validPushedLocked drops the expired keys of pk and returns the rest.
// s.mu must be held.
func (s *Server) validPushedLocked(pk pushKey, now time.Time) []pushedKey {
	keys := slices.DeleteFunc(s.pushed[pk], func(k pushedKey) bool { return !now.Before(k.expires) })
	if len(keys) == 0 {
		delete(s.pushed, pk)
		return nil
	}
	s.pushed[pk] = keys
	return keys
}

// PushedKeys returns the keys pushed with SendSSHPublicKey for instanceID
// and osUser that have not yet expired, oldest first.
func (s *Server) PushedKeys(instanceID, osUser string) []ssh.PublicKey {
	// The clock is read before locking: Options.Now is the caller's code.
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ssh.PublicKey
	for _, k := range s.validPushedLocked(pushKey{instanceID, osUser}, now) {
		out = append(out, k.key)
	}
	return out
}

// serveKeys answers GET KeysPath?instance_id=I&os_user=U with the valid
// pushed keys in authorized_keys format, one per line (an empty body if
// there are none). It is not an AWS API: there is no signature.
func (s *Server) serveKeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	id, user := q.Get("instance_id"), q.Get("os_user")
	if id == "" || user == "" {
		http.Error(w, "instance_id and os_user are required", http.StatusBadRequest)
		return
	}
	var body bytes.Buffer
	for _, k := range s.PushedKeys(id, user) {
		body.Write(ssh.MarshalAuthorizedKey(k))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(body.Bytes())
}
