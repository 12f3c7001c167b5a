package awsfake

import (
	"fmt"
	"net/http"
	"time"
)

// Fault is a misbehaviour injected into the answers to one operation (or
// all of them). Faults apply to requests that pass SigV4 verification.
//
// At most one of ThrottleFirst, ServerErrorFirst, ErrorCode and Malformed
// shapes a given answer, in that order: the first ThrottleFirst calls are
// throttled, the next ServerErrorFirst calls get a server error, and after
// that every call fails with ErrorCode if set, or gets a malformed body if
// Malformed. Latency delays every answer; Hang replaces every answer.
type Fault struct {
	// Latency delays each answer. The delay ends early, with no answer, if
	// the client gives up or the server closes.
	Latency time.Duration
	// ThrottleFirst is how many of the next calls are throttled (JSON APIs:
	// HTTP 400 ThrottlingException; EC2: HTTP 503 RequestLimitExceeded).
	ThrottleFirst int
	// ServerErrorFirst is how many of the next calls, after the throttled
	// ones, get an HTTP 500 (JSON APIs: ServiceException; EC2:
	// InternalError).
	ServerErrorFirst int
	// ErrorCode, if set, makes every further call fail with this error
	// code: HTTP 500 for server-side codes (ServiceException,
	// InternalFailure, InternalError), 503 for RequestLimitExceeded and
	// Unavailable codes, 403 for EC2's UnauthorizedOperation and
	// AuthFailure, 400 otherwise (e.g. AccessDeniedException, as Lightsail
	// answers over awsJson).
	ErrorCode string
	// Hang makes the server never answer: the request is held until the
	// client gives up (its context is done) or the server closes.
	Hang bool
	// Malformed makes every further call get HTTP 200 with a truncated
	// body that is not valid JSON or XML.
	Malformed bool
}

// faultState is a Fault with its remaining counts.
type faultState struct {
	fault         Fault
	throttleLeft  int
	serverErrLeft int
}

// SetFault injects f into the answers to operation op ("" for every
// operation), replacing any fault set before for op. A fault set for an
// operation takes precedence over the one set for "" (they do not combine).
func (s *Server) SetFault(op string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = &faultState{fault: f, throttleLeft: f.ThrottleFirst, serverErrLeft: f.ServerErrorFirst}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// faultKind is what a fault does to one answer.
type faultKind int

const (
	faultNone      faultKind = iota // answer normally
	faultAbort                      // answer nothing
	faultError                      // answer with err
	faultMalformed                  // answer 200 with a broken body
)

// faultAction is the effect of the faults on one request.
type faultAction struct {
	kind faultKind
	err  *apiError
	// closing reports, for faultAbort, that the server is closing (rather
	// than the client having gone away).
	closing bool
}

// applyFault decides what the faults for req do to it, consuming one count
// of ThrottleFirst or ServerErrorFirst, and waits out any Latency or Hang.
// The decision is taken on arrival, so counts are consumed in arrival
// order even when answers are delayed.
func (s *Server) applyFault(req *request) faultAction {
	s.mu.Lock()
	st := s.faults[req.op]
	if st == nil {
		st = s.faults[""]
	}
	if st == nil {
		s.mu.Unlock()
		return faultAction{}
	}
	f := st.fault
	var act faultAction
	switch {
	case st.throttleLeft > 0:
		st.throttleLeft--
		act = faultAction{kind: faultError, err: throttleError(req.proto)}
	case st.serverErrLeft > 0:
		st.serverErrLeft--
		act = faultAction{kind: faultError, err: serverError(req.proto)}
	case f.ErrorCode != "":
		act = faultAction{kind: faultError, err: codeError(req.proto, req.op, f.ErrorCode)}
	case f.Malformed:
		act = faultAction{kind: faultMalformed}
	}
	s.mu.Unlock()

	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.ctx.Done():
			return faultAction{kind: faultAbort}
		case <-s.closed:
			return faultAction{kind: faultAbort, closing: true}
		}
	}
	if f.Hang {
		select {
		case <-req.ctx.Done():
			return faultAction{kind: faultAbort}
		case <-s.closed:
			return faultAction{kind: faultAbort, closing: true}
		}
	}
	return act
}

// throttleError is the protocol's throttling error.
func throttleError(p protocol) *apiError {
	if p == protoEC2 {
		return &apiError{http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."}
	}
	return &apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"}
}

// codeError is the error for a Fault.ErrorCode.
func codeError(p protocol, op, code string) *apiError {
	status := http.StatusBadRequest
	switch code {
	case "ServiceException", "InternalFailure", "InternalError", "InternalServerError":
		status = http.StatusInternalServerError
	case "RequestLimitExceeded", "Unavailable", "ServiceUnavailable", "ServiceUnavailableException", "EC2InstanceUnavailableException":
		status = http.StatusServiceUnavailable
	case "UnauthorizedOperation", "AuthFailure":
		if p == protoEC2 {
			status = http.StatusForbidden
		}
	}
	msg := fmt.Sprintf("injected fault %s for %s", code, op)
	switch code {
	case "AccessDeniedException", "UnauthorizedOperation":
		msg = fmt.Sprintf("You are not authorized to perform this operation (%s).", op)
	}
	return &apiError{status, code, msg}
}
