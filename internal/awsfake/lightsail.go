package awsfake

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultRegion is the region of instances added without one.
const DefaultRegion = "us-east-1"

// fakeAccountID is the account id in the ARNs the fake returns.
const fakeAccountID = "123456789012"

// lightsailPageSize is how many instances one GetInstances page holds.
const lightsailPageSize = 25

// LightsailInstance is a Lightsail instance known to the fake.
type LightsailInstance struct {
	// Name is the instance name, unique within its region.
	Name string
	// Region is the AWS region; if empty, DefaultRegion.
	Region string
	// Username is the OS user Lightsail issues credentials for; if empty,
	// "ec2-user".
	Username string
	// PublicIP is the address GetInstanceAccessDetails returns as ipAddress.
	PublicIP string
	// PrivateIP is the instance's private address.
	PrivateIP string
	// State is the instance state name; if empty, "running".
	State string
	// HostKeys are the instance's SSH host keys, returned by
	// GetInstanceAccessDetails. A key that is an *ssh.Certificate also
	// reports its validity period.
	HostKeys []ssh.PublicKey
	// Tags are the instance's tags.
	Tags map[string]string
	// AvailabilityZone is the zone; if empty, Region + "a".
	AvailabilityZone string
	// Windows, if set, makes it a Windows instance (lightsail_rdp.go);
	// its Username defaults to Administrator.
	Windows *LightsailWindows
}

type lightsailKey struct{ region, name string }

// lightsailEntry is a stored instance with what the fake made up for it.
type lightsailEntry struct {
	in        LightsailInstance
	createdAt time.Time
	id        string
}

// AddLightsailInstance adds in, or replaces the instance of the same name in
// the same region.
func (s *Server) AddLightsailInstance(in LightsailInstance) {
	if in.Region == "" {
		in.Region = DefaultRegion
	}
	switch {
	case in.Username == "" && in.Windows != nil:
		in.Username = windowsUser
	case in.Username == "":
		in.Username = "ec2-user"
	}
	if in.State == "" {
		in.State = "running"
	}
	if in.AvailabilityZone == "" {
		in.AvailabilityZone = in.Region + "a"
	}
	in.HostKeys = slices.Clone(in.HostKeys)
	in.Tags = maps.Clone(in.Tags)
	e := &lightsailEntry{in: in, createdAt: s.now(), id: newRequestID()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lightsail[lightsailKey{in.Region, in.Name}] = e
}

// LightsailCA returns the public key of the CA that signs the user
// certificates GetInstanceAccessDetails issues, for sshd's
// TrustedUserCAKeys.
func (s *Server) LightsailCA() ssh.PublicKey { return s.ca.PublicKey() }

// lightsailInstance returns a copy of the instance name in region.
func (s *Server) lightsailInstance(region, name string) (lightsailEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.lightsail[lightsailKey{region, name}]
	if !ok {
		return lightsailEntry{}, false
	}
	return *e, true
}

func lightsailNotFound(name string) error {
	return &apiError{http.StatusBadRequest, "NotFoundException", fmt.Sprintf("The Instance does not exist: %s", name)}
}

func lightsailInvalidInput(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "InvalidInputException", fmt.Sprintf(format, args...)}
}

// decodeJSONInput decodes a JSON request body into v.
func decodeJSONInput(req *request, v any) error {
	if err := json.Unmarshal(req.body, v); err != nil {
		return &apiError{http.StatusBadRequest, "SerializationException", "decoding request body: " + err.Error()}
	}
	return nil
}

// epochSeconds is a timestamp that marshals as JSON epoch seconds, the
// default timestamp format of the awsJson protocols.
type epochSeconds struct{ time.Time }

// MarshalJSON encodes t as seconds since the epoch, with millisecond
// precision.
func (t epochSeconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(t.UnixMilli())/1000, 'f', -1, 64), nil
}

// The JSON shapes below follow com.amazonaws.lightsail (the SDK's
// service/lightsail/schemas).

type lsHostKey struct {
	Algorithm         string       `json:"algorithm"`
	PublicKey         string       `json:"publicKey"`
	WitnessedAt       epochSeconds `json:"witnessedAt,omitzero"`
	FingerprintSHA1   string       `json:"fingerprintSHA1"`
	FingerprintSHA256 string       `json:"fingerprintSHA256"`
	NotValidBefore    epochSeconds `json:"notValidBefore,omitzero"`
	NotValidAfter     epochSeconds `json:"notValidAfter,omitzero"`
}

type lsAccessDetails struct {
	CertKey      string       `json:"certKey"`
	ExpiresAt    epochSeconds `json:"expiresAt"`
	HostKeys     []lsHostKey  `json:"hostKeys"`
	InstanceName string       `json:"instanceName"`
	IPAddress    string       `json:"ipAddress,omitempty"`
	PrivateKey   string       `json:"privateKey"`
	Protocol     string       `json:"protocol"`
	Username     string       `json:"username"`
}

type lsLocation struct {
	AvailabilityZone string `json:"availabilityZone"`
	RegionName       string `json:"regionName"`
}

type lsTag struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

type lsState struct {
	Code int    `json:"code"`
	Name string `json:"name"`
}

type lsHardware struct {
	CPUCount    int     `json:"cpuCount"`
	RAMSizeInGb float64 `json:"ramSizeInGb"`
}

type lsPort struct {
	FromPort        int      `json:"fromPort"`
	ToPort          int      `json:"toPort"`
	Protocol        string   `json:"protocol"`
	AccessFrom      string   `json:"accessFrom"`
	AccessType      string   `json:"accessType"`
	AccessDirection string   `json:"accessDirection"`
	Cidrs           []string `json:"cidrs"`
}

type lsNetworking struct {
	Ports []lsPort `json:"ports"`
}

type lsInstance struct {
	Name             string       `json:"name"`
	Arn              string       `json:"arn"`
	SupportCode      string       `json:"supportCode"`
	CreatedAt        epochSeconds `json:"createdAt"`
	Location         lsLocation   `json:"location"`
	ResourceType     string       `json:"resourceType"`
	Tags             []lsTag      `json:"tags"`
	BlueprintID      string       `json:"blueprintId"`
	BlueprintName    string       `json:"blueprintName"`
	BundleID         string       `json:"bundleId"`
	IsStaticIP       bool         `json:"isStaticIp"`
	PrivateIPAddress string       `json:"privateIpAddress,omitempty"`
	PublicIPAddress  string       `json:"publicIpAddress,omitempty"`
	IPAddressType    string       `json:"ipAddressType"`
	Hardware         lsHardware   `json:"hardware"`
	Networking       lsNetworking `json:"networking"`
	State            lsState      `json:"state"`
	Username         string       `json:"username"`
	SSHKeyName       string       `json:"sshKeyName"`
}

// lightsailStateCodes are the state codes Lightsail reports (the EC2 ones).
var lightsailStateCodes = map[string]int{
	"pending":       0,
	"running":       16,
	"shutting-down": 32,
	"terminated":    48,
	"stopping":      64,
	"stopped":       80,
}

// blueprints maps a default user name to a plausible blueprint.
var blueprints = map[string][2]string{
	"ubuntu":  {"ubuntu_24_04", "Ubuntu"},
	"admin":   {"debian_12", "Debian"},
	"bitnami": {"wordpress", "WordPress"},
}

func (e *lightsailEntry) toJSON() lsInstance {
	in := e.in
	bp, ok := blueprints[in.Username]
	if !ok {
		bp = [2]string{"amazon_linux_2023", "Amazon Linux 2023"}
	}
	tags := make([]lsTag, 0, len(in.Tags))
	for _, k := range sortedKeys(in.Tags) {
		tags = append(tags, lsTag{Key: k, Value: in.Tags[k]})
	}
	v := lsInstance{
		Name:             in.Name,
		Arn:              fmt.Sprintf("arn:aws:lightsail:%s:%s:Instance/%s", in.Region, fakeAccountID, e.id),
		SupportCode:      fakeAccountID + "/" + in.Name,
		CreatedAt:        epochSeconds{e.createdAt},
		Location:         lsLocation{AvailabilityZone: in.AvailabilityZone, RegionName: in.Region},
		ResourceType:     "Instance",
		Tags:             tags,
		BlueprintID:      bp[0],
		BlueprintName:    bp[1],
		BundleID:         "nano_3_0",
		PrivateIPAddress: in.PrivateIP,
		PublicIPAddress:  in.PublicIP,
		IPAddressType:    "ipv4",
		Hardware:         lsHardware{CPUCount: 2, RAMSizeInGb: 0.5},
		Networking: lsNetworking{Ports: []lsPort{{
			FromPort: 22, ToPort: 22, Protocol: "tcp",
			AccessFrom: "Anywhere (0.0.0.0/0)", AccessType: "public", AccessDirection: "inbound",
			Cidrs: []string{"0.0.0.0/0"},
		}}},
		State:      lsState{Code: lightsailStateCodes[in.State], Name: in.State},
		Username:   in.Username,
		SSHKeyName: "LightsailDefaultKeyPair",
	}
	if in.Windows != nil {
		windowsJSON(&v)
	}
	return v
}

// getInstance implements Lightsail GetInstance.
func (s *Server) getInstance(req *request) (any, error) {
	var in struct {
		InstanceName string `json:"instanceName"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if in.InstanceName == "" {
		return nil, lightsailInvalidInput("instanceName is required")
	}
	e, ok := s.lightsailInstance(req.region, in.InstanceName)
	if !ok {
		return nil, lightsailNotFound(in.InstanceName)
	}
	return map[string]any{"instance": e.toJSON()}, nil
}

// getInstances implements Lightsail GetInstances: every instance in the
// request's region, by name, in pages of lightsailPageSize.
func (s *Server) getInstances(req *request) (any, error) {
	var in struct {
		PageToken string `json:"pageToken"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	start := 0
	if in.PageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.PageToken)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || perr != nil || n < 0 {
			return nil, lightsailInvalidInput("pageToken %q is not valid", in.PageToken)
		}
		start = n
	}

	s.mu.Lock()
	var all []lsInstance
	for k, e := range s.lightsail {
		if k.region == req.region {
			all = append(all, e.toJSON())
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b lsInstance) int { return strings.Compare(a.Name, b.Name) })

	out := struct {
		Instances     []lsInstance `json:"instances"`
		NextPageToken string       `json:"nextPageToken,omitempty"`
	}{Instances: []lsInstance{}}
	if start < len(all) {
		end := min(start+lightsailPageSize, len(all))
		out.Instances = all[start:end]
		if end < len(all) {
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
		}
	}
	return out, nil
}

// getInstanceAccessDetails implements Lightsail GetInstanceAccessDetails:
// a fresh RSA 2048 key and an OpenSSH user certificate for it, signed by
// the fake CA, for the instance's user name, valid until expiresAt.
func (s *Server) getInstanceAccessDetails(req *request) (any, error) {
	var in struct {
		InstanceName string `json:"instanceName"`
		Protocol     string `json:"protocol"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if in.InstanceName == "" {
		return nil, lightsailInvalidInput("instanceName is required")
	}
	switch in.Protocol {
	case "", "ssh", "rdp":
	default:
		return nil, lightsailInvalidInput("protocol %q is not one of ssh, rdp", in.Protocol)
	}
	e, ok := s.lightsailInstance(req.region, in.InstanceName)
	if !ok {
		return nil, lightsailNotFound(in.InstanceName)
	}
	switch {
	case in.Protocol == "rdp":
		return s.rdpAccessDetails(e)
	case e.in.Windows != nil:
		return nil, lightsailInvalidInput("The instance %s does not support SSH access", in.InstanceName)
	}

	now := s.now()
	expires := now.Add(s.opts.CertValidity).Truncate(time.Second)
	priv, err := s.rsaKey()
	if err != nil {
		return nil, fmt.Errorf("generating rsa key: %w", err)
	}
	pub, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("converting rsa key: %w", err)
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          s.serial(),
		CertType:        ssh.UserCert,
		KeyId:           fmt.Sprintf("lightsail:%s:%s:%s", e.in.Region, e.in.Name, req.requestID),
		ValidPrincipals: []string{e.in.Username},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(expires.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-X11-forwarding":   "",
			"permit-agent-forwarding": "",
			"permit-port-forwarding":  "",
			"permit-pty":              "",
			"permit-user-rc":          "",
		}},
	}
	if err := cert.SignCert(rand.Reader, s.ca); err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})

	hostKeys := make([]lsHostKey, 0, len(e.in.HostKeys))
	for _, k := range e.in.HostKeys {
		hostKeys = append(hostKeys, hostKeyJSON(k, e.createdAt))
	}
	return map[string]any{"accessDetails": lsAccessDetails{
		CertKey:      strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		ExpiresAt:    epochSeconds{expires},
		HostKeys:     hostKeys,
		InstanceName: e.in.Name,
		IPAddress:    e.in.PublicIP,
		PrivateKey:   string(keyPEM),
		Protocol:     "ssh",
		Username:     e.in.Username,
	}}, nil
}

// hostKeyJSON describes host key k as Lightsail's HostKeyAttributes.
func hostKeyJSON(k ssh.PublicKey, witnessed time.Time) lsHostKey {
	blob := k.Marshal()
	sum1 := sha1.Sum(blob)
	hk := lsHostKey{
		Algorithm:         k.Type(),
		PublicKey:         base64.StdEncoding.EncodeToString(blob),
		WitnessedAt:       epochSeconds{witnessed},
		FingerprintSHA1:   colonHex(sum1[:]),
		FingerprintSHA256: ssh.FingerprintSHA256(k),
	}
	if c, ok := k.(*ssh.Certificate); ok {
		hk.NotValidBefore = epochSeconds{time.Unix(int64(c.ValidAfter), 0)}
		if c.ValidBefore != ssh.CertTimeInfinity {
			hk.NotValidAfter = epochSeconds{time.Unix(int64(c.ValidBefore), 0)}
		}
	}
	return hk
}

// colonHex renders b as "ab:cd:…", the legacy fingerprint format.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i := range b {
		parts[i] = hex.EncodeToString(b[i : i+1])
	}
	return strings.Join(parts, ":")
}

// serial returns a new certificate serial number.
func (s *Server) serial() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextSerial++
	return s.nextSerial
}
