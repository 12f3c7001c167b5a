// Package awsfake is a wire-faithful fake of the AWS APIs the bastion uses:
// Lightsail (GetInstance, GetInstances, GetInstanceAccessDetails), EC2
// (DescribeInstances, GetConsoleOutput), EC2 Instance Connect
// (SendSSHPublicKey, SendSerialConsoleSSHPublicKey, and the serial console
// SSH endpoint, see StartSerialConsole), SSM
// Parameter Store (GetParameter), Secrets Manager (GetSecretValue) and
// CloudWatch Logs (CreateLogGroup, CreateLogStream, PutLogEvents,
// GetLogEvents, DescribeLogStreams; AWS_ENDPOINT_URL_CLOUDWATCH_LOGS).
//
// A Server listens on 127.0.0.1 and speaks the same protocols as AWS
// (awsJson1_1 for Lightsail, Instance Connect, SSM and Secrets Manager, the
// EC2 query protocol for EC2), so that the real aws-sdk-go-v2 clients talk
// to it unchanged when pointed at URL() through config.WithBaseEndpoint or
// the AWS_ENDPOINT_URL_LIGHTSAIL, AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT,
// AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_SSM and
// AWS_ENDPOINT_URL_SECRETS_MANAGER environment variables. Every request must
// carry a valid AWS Signature Version 4 made with the server's access key;
// the region of the signature's credential scope selects which instances are
// visible.
//
// Besides the AWS APIs the server answers one plain HTTP endpoint,
// GET /_fake/ec2-instance-connect/keys?instance_id=I&os_user=U, which lists
// the keys pushed with SendSSHPublicKey that are still valid, in
// authorized_keys format. The eic-keys command (cmd/eic-keys) fetches it for
// sshd's AuthorizedKeysCommand, as eic_run_authorized_keys does on EC2.
//
// Faults (latency, throttling, server errors, hangs, malformed bodies) can be
// injected per operation with SetFault, and every request is recorded (Calls).
package awsfake

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Defaults for the zero values of Options.
const (
	DefaultAccessKeyID     = "AKIDBASTIONFAKE"
	DefaultSecretAccessKey = "bastion-fake-secret"
	DefaultCertValidity    = time.Hour
	DefaultPushedKeyTTL    = 60 * time.Second
)

// Service names, as used in SigV4 credential scopes and Call.Service.
const (
	ServiceLightsail       = "lightsail"
	ServiceEC2             = "ec2"
	ServiceInstanceConnect = "ec2-instance-connect"
)

// KeysPath is the path of the plain HTTP endpoint that lists the currently
// valid keys pushed with SendSSHPublicKey.
const KeysPath = "/_fake/ec2-instance-connect/keys"

// maxBodyBytes bounds the size of a request body: room for a full
// PutLogEvents batch (1 MiB of messages, which JSON escaping can double).
const maxBodyBytes = 4 << 20

// Options configure a Server. The zero value is usable.
type Options struct {
	// AccessKeyID and SecretAccessKey are the only credentials the server
	// accepts. If empty, DefaultAccessKeyID and DefaultSecretAccessKey.
	AccessKeyID, SecretAccessKey string
	// CertValidity is the lifetime of the credentials that
	// GetInstanceAccessDetails issues (expiresAt). If zero,
	// DefaultCertValidity.
	CertValidity time.Duration
	// RSAKeyPool, if positive, is how many RSA keys for
	// GetInstanceAccessDetails are generated ahead in the background, so
	// that the key's generation (tens of milliseconds of CPU) is not part
	// of each call's latency; benchmarks and the demo set it. Zero
	// generates each key in the call.
	RSAKeyPool int
	// PushedKeyTTL is how long a key pushed with SendSSHPublicKey stays
	// valid. If zero, DefaultPushedKeyTTL.
	PushedKeyTTL time.Duration
	// SerialConsoleTeardown is how long an instance's serial console
	// session stays open after its SSH connection ends, during which a
	// new SendSerialConsoleSSHPublicKey is refused (AWS takes 30
	// seconds). If zero, DefaultSerialConsoleTeardown.
	SerialConsoleTeardown time.Duration
	// Now is the server's clock: it dates calls, instances, the
	// credentials GetInstanceAccessDetails issues and the keys pushed with
	// SendSSHPublicKey, so that a test can move it to expire them. The Date
	// header of the answers stays the wall clock (see writeBody). If nil,
	// time.Now.
	Now func() time.Time
	// Logger receives one debug entry per request. If nil, nothing is
	// logged.
	Logger *zap.Logger
}

// Call is one request the server received.
type Call struct {
	// Service is ServiceLightsail, ServiceEC2, ServiceInstanceConnect,
	// ServiceSSM or ServiceSecretsManager; empty if the request matched no
	// API.
	Service string
	// Operation is the operation name, e.g. "GetInstanceAccessDetails".
	Operation string
	// Region is the region of the request's SigV4 credential scope, if it
	// could be parsed.
	Region string
	// RequestID is the request id returned to the client.
	RequestID string
	// Time is when the request arrived, by the server's clock.
	Time time.Time
	// Status is the HTTP status of the answer; 0 while the request is in
	// flight, or if no answer was written (the client gave up or the server
	// closed).
	Status int
	// ErrorCode is the AWS error code of the answer; empty on success.
	ErrorCode string
	// Params is the flattened input: top-level JSON members (nested ones
	// joined with ".") for the JSON APIs, form fields other than Action and
	// Version for EC2.
	Params map[string]string
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *zap.Logger
	ca       ssh.Signer
	ln       net.Listener
	srv      *http.Server
	closed   chan struct{}
	closeMu  sync.Once
	serveErr chan error
	// rsaKeys holds RSA keys generated ahead for GetInstanceAccessDetails,
	// filled by one goroutine (keysDone is closed when it returns): a
	// 2048-bit key costs tens of milliseconds of CPU, which would
	// otherwise land inside every call's latency.
	rsaKeys  chan *rsa.PrivateKey
	keysDone chan struct{}
	// handlers tracks running requests, so that Close returns only once
	// they are done (http.Server.Close does not wait for handlers, and a
	// handler that logs after a test has ended panics).
	handlers sync.WaitGroup

	// mu protects the fields below.
	mu         sync.Mutex
	lightsail  map[lightsailKey]*lightsailEntry
	ec2        map[string]*ec2Entry
	pushed     map[pushKey][]pushedKey
	calls      []Call
	faults     map[string]*faultState
	nextSerial uint64
	// serialConsole is the EC2 serial console state (serialconsole.go),
	// under its own mutex.
	serialConsole serialState
	parameters    map[string]*ssmParameter  // by name; see PutParameter
	secrets       map[string]*smSecret      // by name; see PutSecret
	logGroups     map[logGroupKey]*logGroup // see CreateLogGroup
}

// Start starts a server listening on 127.0.0.1 on a free port.
func Start(opts Options) (*Server, error) {
	if opts.AccessKeyID == "" {
		opts.AccessKeyID = DefaultAccessKeyID
	}
	if opts.SecretAccessKey == "" {
		opts.SecretAccessKey = DefaultSecretAccessKey
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = DefaultCertValidity
	}
	if opts.PushedKeyTTL <= 0 {
		opts.PushedKeyTTL = DefaultPushedKeyTTL
	}
	if opts.SerialConsoleTeardown <= 0 {
		opts.SerialConsoleTeardown = DefaultSerialConsoleTeardown
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}

	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating lightsail ca key: %w", err)
	}
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("creating lightsail ca signer: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	s := &Server{
		opts:      opts,
		log:       log,
		ca:        ca,
		ln:        ln,
		closed:    make(chan struct{}),
		serveErr:  make(chan error, 1),
		lightsail: make(map[lightsailKey]*lightsailEntry),
		ec2:       make(map[string]*ec2Entry),
		pushed:    make(map[pushKey][]pushedKey),
		faults:    make(map[string]*faultState),
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}
	s.rsaKeys = make(chan *rsa.PrivateKey, max(opts.RSAKeyPool, 0))
	s.keysDone = make(chan struct{})
	if opts.RSAKeyPool > 0 {
		go s.fillKeys()
	} else {
		close(s.keysDone)
	}
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	log.Debug("awsfake_started", zap.String("url", s.URL()))
	return s, nil
}

// URL returns the server's base URL, "http://127.0.0.1:PORT".
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// AccessKeyID returns the access key id the server accepts.
func (s *Server) AccessKeyID() string { return s.opts.AccessKeyID }

// SecretAccessKey returns the secret access key the server accepts.
func (s *Server) SecretAccessKey() string { return s.opts.SecretAccessKey }

// Close stops the server at once: requests held by a Hang or Latency fault
// are aborted and every connection is closed. (A graceful Shutdown would
// wait up to five seconds for a connection the SDK opened but has not used
// yet, which only slows tests down.)
func (s *Server) Close() error {
	var err error
	s.closeMu.Do(func() {
		close(s.closed)
		err = s.srv.Close()
		if serr := <-s.serveErr; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.handlers.Wait()
		<-s.keysDone
	})
	return err
}

// fillKeys keeps rsaKeys full until the server is closed.
func (s *Server) fillKeys() {
	defer close(s.keysDone)
	for {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return
		}
		select {
		case s.rsaKeys <- k:
		case <-s.closed:
			return
		}
	}
}

// rsaKey returns a fresh RSA key: one generated ahead, or a new one.
func (s *Server) rsaKey() (*rsa.PrivateKey, error) {
	select {
	case k := <-s.rsaKeys:
		return k, nil
	default:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
}

// Calls returns every request received so far, in order of arrival.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Params = maps.Clone(c.Params)
		out[i] = c
	}
	return out
}

// CallCount returns how many requests for operation op were received.
func (s *Server) CallCount(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Operation == op {
			n++
		}
	}
	return n
}

func (s *Server) now() time.Time { return s.opts.Now() }

// apiError is an AWS error answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// protocol is how an API encodes its answers.
type protocol int

const (
	protoJSON protocol = iota // awsJson1_1
	protoEC2                  // EC2 query protocol
)

// request is one decoded AWS request.
type request struct {
	ctx       context.Context
	service   string
	proto     protocol
	op        string
	region    string
	requestID string
	body      []byte
	// form is the decoded body of an EC2 request.
	form map[string][]string
}

// handlerFunc answers one operation. The result is marshalled as JSON or
// XML depending on the protocol; an error that is not an *apiError becomes
// an internal error.
type handlerFunc func(s *Server, req *request) (any, error)

// api is one AWS service's dispatch table.
type api struct {
	service string
	proto   protocol
	// messageKey is the JSON member that carries error messages.
	messageKey string
	ops        map[string]handlerFunc
}

const (
	lightsailTargetPrefix       = "Lightsail_20161128."
	instanceConnectTargetPrefix = "AWSEC2InstanceConnectService."
	ec2Version                  = "2016-11-15"
	ec2Namespace                = "http://ec2.amazonaws.com/doc/2016-11-15/"
)

var (
	lightsailAPI = &api{
		service:    ServiceLightsail,
		proto:      protoJSON,
		messageKey: "message",
		ops: map[string]handlerFunc{
			"GetInstance":              (*Server).getInstance,
			"GetInstances":             (*Server).getInstances,
			"GetInstanceAccessDetails": (*Server).getInstanceAccessDetails,
		},
	}
	instanceConnectAPI = &api{
		service:    ServiceInstanceConnect,
		proto:      protoJSON,
		messageKey: "Message",
		ops: map[string]handlerFunc{
			"SendSSHPublicKey":              (*Server).sendSSHPublicKey,
			"SendSerialConsoleSSHPublicKey": (*Server).sendSerialConsoleSSHPublicKey,
		},
	}
	ec2API = &api{
		service: ServiceEC2,
		proto:   protoEC2,
		ops: map[string]handlerFunc{
			"DescribeInstances": (*Server).describeInstances,
			"GetConsoleOutput":  (*Server).getConsoleOutput,
		},
	}
)

// ServeHTTP dispatches a request to the fake API it addresses.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	if r.URL.Path == KeysPath {
		s.serveKeys(w, r)
		return
	}

	req := &request{ctx: r.Context(), requestID: newRequestID()}
	call := Call{RequestID: req.requestID, Time: s.now()}
	if sc, ok := parseScope(r.Header.Get("Authorization")); ok {
		call.Region = sc.region
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	req.body = body

	a, err := s.identify(r, req)
	call.Service, call.Operation = req.service, req.op
	if err == nil {
		call.Params = flattenParams(req)
	}
	idx := s.beginCall(call)
	var status int
	var code string
	// Deferred so that a request aborted with http.ErrAbortHandler is
	// still recorded (with status 0).
	defer func() { s.endCall(idx, req, status, code) }()
	if err != nil {
		// Not an operation of an API this fake knows.
		status, code = s.writeError(w, req, a, err)
	} else {
		status, code = s.serve(w, r, req, a)
	}
}

// identify determines the API and operation of r, filling req.
func (s *Server) identify(r *http.Request, req *request) (*api, error) {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		var a *api
		switch {
		case strings.HasPrefix(target, lightsailTargetPrefix):
			a = lightsailAPI
		case strings.HasPrefix(target, instanceConnectTargetPrefix):
			a = instanceConnectAPI
		case strings.HasPrefix(target, ssmTargetPrefix):
			a = ssmAPI
		case strings.HasPrefix(target, secretsManagerTargetPrefix):
			a = secretsManagerAPI
		case strings.HasPrefix(target, logsTargetPrefix):
			a = logsAPI
		default:
			req.proto = protoJSON
			return nil, &apiError{http.StatusBadRequest, "UnknownOperationException", "unknown target " + target}
		}
		req.service, req.proto = a.service, a.proto
		_, req.op, _ = strings.Cut(target, ".")
		if r.Method != http.MethodPost {
			return a, &apiError{http.StatusBadRequest, "UnknownOperationException", "json apis accept only POST"}
		}
		return a, nil
	}
	req.proto = protoEC2
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return nil, &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("%s %s is not an AWS API request", r.Method, r.URL.Path)}
	}
	form, err := parseForm(req.body)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "MalformedQueryString", "decoding form body: " + err.Error()}
	}
	req.form = form
	req.service = ServiceEC2
	req.op = first(form["Action"])
	return ec2API, nil
}

// serve authenticates req, applies faults and runs the operation. It
// returns the status and error code written, status 0 if none.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, req *request, a *api) (int, string) {
	region, err := s.verifySigV4(r, req.body, a.service)
	if err != nil {
		return s.writeError(w, req, a, authAPIError(req.proto, err))
	}
	req.region = region

	if req.proto == protoEC2 {
		if v := first(req.form["Version"]); v != ec2Version {
			return s.writeError(w, req, a, &apiError{http.StatusBadRequest, "InvalidParameterValue",
				fmt.Sprintf("unsupported version %q, want %q", v, ec2Version)})
		}
	}
	h, ok := a.ops[req.op]
	if !ok {
		code := "UnknownOperationException"
		if req.proto == protoEC2 {
			code = "InvalidAction"
		}
		return s.writeError(w, req, a, &apiError{http.StatusBadRequest, code,
			fmt.Sprintf("the action %s is not valid for this web service", req.op)})
	}

	switch act := s.applyFault(req); act.kind {
	case faultAbort:
		// The client went away or the server is closing: answer nothing.
		if act.closing {
			panic(http.ErrAbortHandler)
		}
		return 0, ""
	case faultError:
		return s.writeError(w, req, a, act.err)
	case faultMalformed:
		return s.writeMalformed(w, req), ""
	}

	out, err := h(s, req)
	if err != nil {
		return s.writeError(w, req, a, err)
	}
	return s.writeResult(w, req, out)
}

// writeResult marshals out in req's protocol and writes it with status 200.
func (s *Server) writeResult(w http.ResponseWriter, req *request, out any) (int, string) {
	var buf bytes.Buffer
	switch req.proto {
	case protoJSON:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if err := json.NewEncoder(&buf).Encode(out); err != nil {
			return s.writeError(w, req, nil, fmt.Errorf("encoding json: %w", err))
		}
	case protoEC2:
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		buf.WriteString(xml.Header)
		if err := xml.NewEncoder(&buf).Encode(out); err != nil {
			return s.writeError(w, req, nil, fmt.Errorf("encoding xml: %w", err))
		}
	}
	s.writeBody(w, req, http.StatusOK, buf.Bytes())
	return http.StatusOK, ""
}

// writeError writes err as an AWS error in req's protocol. An error that is
// not an *apiError is written as the protocol's internal error.
func (s *Server) writeError(w http.ResponseWriter, req *request, a *api, err error) (int, string) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("awsfake_internal_error", zap.String("op", req.op), zap.Error(err))
		ae = serverError(req.proto)
	}
	var body []byte
	switch req.proto {
	case protoJSON:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		key := "message"
		if a != nil {
			key = a.messageKey
		}
		m := map[string]string{"__type": ae.Code}
		if ae.Message != "" {
			// SSM's ParameterNotFound has no message at all.
			m[key] = ae.Message
		}
		body, _ = json.Marshal(m)
	case protoEC2:
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		var buf bytes.Buffer
		buf.WriteString(xml.Header)
		_ = xml.NewEncoder(&buf).Encode(ec2ErrorResponse{
			Errors:    []ec2Error{{Code: ae.Code, Message: ae.Message}},
			RequestID: req.requestID,
		})
		body = buf.Bytes()
	}
	s.writeBody(w, req, ae.Status, body)
	return ae.Status, ae.Code
}

// writeMalformed answers 200 with a body that is not valid JSON or XML.
func (s *Server) writeMalformed(w http.ResponseWriter, req *request) int {
	var body string
	switch req.proto {
	case protoJSON:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		body = `{"accessDetails": {"certKey": "ssh-rsa-cert-v01@openssh.com AAAA`
	case protoEC2:
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		body = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
			`<` + req.op + `Response xmlns="` + ec2Namespace + `"><requestId>` + req.requestID + `</requestId><reservationSet><item><instancesSet><item><instanceId>i-`
	}
	s.writeBody(w, req, http.StatusOK, []byte(body))
	return http.StatusOK
}

// writeBody writes an answer to req. The Date header is left to net/http,
// which sets the wall clock, not Options.Now: the SDK takes a Date more than
// four minutes from its own clock for clock skew, and then retries signature
// errors (InvalidSignatureException, SignatureDoesNotMatch, AuthFailure) that
// AWS would have it report at once.
func (s *Server) writeBody(w http.ResponseWriter, req *request, status int, body []byte) {
	w.Header().Set("X-Amzn-RequestId", req.requestID)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serverError is the protocol's generic 500 error.
func serverError(p protocol) *apiError {
	if p == protoEC2 {
		return &apiError{http.StatusInternalServerError, "InternalError", "An internal error has occurred"}
	}
	return &apiError{http.StatusInternalServerError, "ServiceException", "An internal error has occurred"}
}

// beginCall records c and returns its index for endCall.
func (s *Server) beginCall(c Call) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	return len(s.calls) - 1
}

// endCall records the outcome of call idx.
func (s *Server) endCall(idx int, req *request, status int, code string) {
	s.mu.Lock()
	c := &s.calls[idx]
	c.Status, c.ErrorCode = status, code
	s.mu.Unlock()
	s.log.Debug("awsfake_request",
		zap.String("service", req.service),
		zap.String("op", req.op),
		zap.String("region", req.region),
		zap.String("request_id", req.requestID),
		zap.Int("status", status),
		zap.String("error_code", code))
}

// flattenParams returns req's input as flat key/value pairs.
func flattenParams(req *request) map[string]string {
	out := make(map[string]string)
	if req.proto == protoEC2 {
		for k, v := range req.form {
			if k == "Action" || k == "Version" {
				continue
			}
			out[k] = first(v)
		}
		return out
	}
	var v any
	if err := json.Unmarshal(req.body, &v); err == nil {
		flattenJSON(out, "", v)
	}
	return out
}

func flattenJSON(out map[string]string, prefix string, v any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			flattenJSON(out, join(k), e)
		}
	case []any:
		for i, e := range v {
			flattenJSON(out, join(fmt.Sprint(i+1)), e)
		}
	case nil:
	case string:
		out[prefix] = v
	default:
		out[prefix] = fmt.Sprint(v)
	}
}

// parseForm decodes an application/x-www-form-urlencoded body.
func parseForm(body []byte) (map[string][]string, error) {
	r, err := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	return r.PostForm, nil
}

// newRequestID returns a random UUID, the shape of AWS request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

var _ http.Handler = (*Server)(nil)
