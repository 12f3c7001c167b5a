package upstream

import (
	"errors"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyUnknown reports that the bastion has no host key on record for
// a target and is not allowed to learn one (a pinned host key store).
var ErrHostKeyUnknown = errors.New("host key not known")

// HostKeyMismatchError reports that an instance presented a host key other
// than the one(s) the bastion expected. Providers may wrap it in an *Error
// whose Public sentence says where the expected key came from (AWS, the
// trust-on-first-use store, the configuration); errors.As finds it either
// way.
type HostKeyMismatchError struct {
	// Target names the instance: a target string or an instance id.
	Target string
	// Got is the key the instance presented.
	Got ssh.PublicKey
	// Want are the keys that would have been accepted, if known.
	Want []ssh.PublicKey
}

func (e *HostKeyMismatchError) Error() string { return "host key mismatch" }

// Public returns the sentence shown to the person.
func (e *HostKeyMismatchError) Public() string {
	return "upstream host key does not match the expected one"
}
