package sso

import "errors"

// Labels of a refused login: the reason field of the sso_denied audit
// event and the label of the bastion_sso_logins_total metric.
const (
	LabelDenied       = "denied"
	LabelExpired      = "expired"
	LabelInvalidToken = "invalid_token"
	LabelUnreachable  = "unreachable"
	LabelDomain       = "domain"
	LabelNoUsername   = "no_username"
	LabelMergeRefused = "merge_refused"
	LabelLimit        = "limit"
)

// Refusal is why a login did not bind a key. Message is what the person
// reads; Err, the detail, goes to the log and the audit event's error.
type Refusal struct {
	// Label is one of the Label* constants.
	Label string
	// Reason completes the person's message for some labels: the short
	// reason a token was not valid, the domain or merge refusal.
	Reason string
	Err    error
}

func (r *Refusal) Error() string {
	s := "sso login refused: " + r.Label
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

func (r *Refusal) Unwrap() error { return r.Err }

// Message returns the one line the person reads, starting "bastion: ".
func (r *Refusal) Message() string {
	const p = "bastion: login refused: "
	switch r.Label {
	case LabelDenied:
		return p + "the identity provider denied the request"
	case LabelExpired:
		return p + "the code expired before it was approved"
	case LabelInvalidToken:
		return p + "the identity provider's token was not valid (" + r.Reason + ")"
	case LabelUnreachable:
		return p + "cannot reach the identity provider; try again later"
	case LabelLimit:
		if r.Reason != "" {
			return p + r.Reason + "; try again later"
		}
		return p + "too many logins in progress; try again later"
	}
	if r.Reason != "" {
		return p + r.Reason
	}
	return p + r.Label
}

// LabelOf returns the label of err if it is a Refusal, and
// LabelUnreachable otherwise.
func LabelOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Label
	}
	return LabelUnreachable
}

// AsRefusal returns err as a Refusal, wrapping any other error as the
// provider unreachable.
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return &Refusal{Label: LabelUnreachable, Err: err}
}
