package awsfake

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EC2Instance is an EC2 instance known to the fake, for DescribeInstances
// and SendSSHPublicKey.
type EC2Instance struct {
	// ID is the instance id, "i-" and 8 or 17 hex digits.
	ID string
	// Region is the AWS region; if empty, DefaultRegion.
	Region string
	// AvailabilityZone is the zone; if empty, Region + "a".
	AvailabilityZone string
	// PrivateIP and PublicIP are the instance's addresses; PublicIP may be
	// empty.
	PrivateIP, PublicIP string
	// State is the instance state name; if empty, "running".
	State string
	// Tags are the instance's tags, the Name tag included.
	Tags map[string]string
	// InstanceType is the instance type; if empty, "t3.micro". A Xen
	// (not Nitro-based) type such as "t2.micro" has no serial console.
	InstanceType string
	// ConsoleOutput is what GetConsoleOutput returns (the fake encodes it
	// in base64, as EC2 does); empty, the answer has no output, as for an
	// instance that has printed nothing yet.
	ConsoleOutput string
}

// ec2Entry is a stored instance with what the fake made up for it.
type ec2Entry struct {
	in         EC2Instance
	launchedAt time.Time
}

// AddEC2Instance adds in, or replaces the instance with the same id.
func (s *Server) AddEC2Instance(in EC2Instance) {
	if in.Region == "" {
		in.Region = DefaultRegion
	}
	if in.State == "" {
		in.State = "running"
	}
	if in.AvailabilityZone == "" {
		in.AvailabilityZone = in.Region + "a"
	}
	in.Tags = maps.Clone(in.Tags)
	e := &ec2Entry{in: in, launchedAt: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ec2[in.ID] = e
}

// ec2Instance returns a copy of instance id if it is in region.
func (s *Server) ec2Instance(region, id string) (ec2Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.ec2[id]
	if !ok || e.in.Region != region {
		return ec2Entry{}, false
	}
	return *e, true
}

// ec2InstanceIDPattern is the shape of an instance id.
var ec2InstanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// ec2StateCodes are EC2's instance state codes.
var ec2StateCodes = map[string]int{
	"pending":       0,
	"running":       16,
	"shutting-down": 32,
	"terminated":    48,
	"stopping":      64,
	"stopped":       80,
}

func ec2Err(code, format string, args ...any) error {
	return &apiError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

// ec2Filter is one Filter.N of a DescribeInstances request.
type ec2Filter struct {
	name   string
	values []string
}

// describeInstances implements EC2 DescribeInstances with the InstanceId.N,
// Filter.N.Name/Filter.N.Value.M, MaxResults, NextToken and DryRun
// parameters. Each instance is in its own reservation.
func (s *Server) describeInstances(req *request) (any, error) {
	form := req.form
	if dry, _ := strconv.ParseBool(first(form["DryRun"])); dry {
		return nil, &apiError{http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."}
	}
	ids := indexedValues(form, "InstanceId.")
	for _, id := range ids {
		if !ec2InstanceIDPattern.MatchString(id) {
			return nil, ec2Err("InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
	}
	filters, err := parseEC2Filters(form)
	if err != nil {
		return nil, err
	}
	maxResults := 0
	if v := first(form["MaxResults"]); v != "" {
		if len(ids) > 0 {
			return nil, ec2Err("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > 1000 {
			return nil, ec2Err("InvalidParameterValue", "Value ( %s ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", v)
		}
		maxResults = n
	}
	start := 0
	if tok := first(form["NextToken"]); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || perr != nil || n < 0 {
			return nil, ec2Err("InvalidParameterValue", "Invalid value '%s' for nextToken", tok)
		}
		start = n
	}

	var matched []ec2Entry
	if len(ids) > 0 {
		var missing []string
		for _, id := range ids {
			e, ok := s.ec2Instance(req.region, id)
			if !ok {
				missing = append(missing, id)
				continue
			}
			matched = append(matched, e)
		}
		switch len(missing) {
		case 0:
		case 1:
			return nil, ec2Err("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
		default:
			return nil, ec2Err("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
		}
	} else {
		s.mu.Lock()
		for _, e := range s.ec2 {
			if e.in.Region == req.region {
				matched = append(matched, *e)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(matched, func(a, b ec2Entry) int { return strings.Compare(a.in.ID, b.in.ID) })
	matched = slices.DeleteFunc(matched, func(e ec2Entry) bool { return !matchesFilters(e.in, filters) })

	out := ec2DescribeInstancesResponse{RequestID: req.requestID}
	page := matched
	if start > len(page) {
		start = len(page)
	}
	page = page[start:]
	if maxResults > 0 && len(page) > maxResults {
		page = page[:maxResults]
		out.NextToken = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(start+maxResults)))
	}
	for _, e := range page {
		out.ReservationSet.Items = append(out.ReservationSet.Items, e.toXML())
	}
	return out, nil
}

// indexedValues returns the values of the form fields PREFIX1, PREFIX2, …
// in index order.
func indexedValues(form map[string][]string, prefix string) []string {
	type kv struct {
		n int
		v string
	}
	var got []kv
	for k, v := range form {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		got = append(got, kv{n, first(v)})
	}
	slices.SortFunc(got, func(a, b kv) int { return a.n - b.n })
	out := make([]string, len(got))
	for i, e := range got {
		out[i] = e.v
	}
	return out
}

// parseEC2Filters decodes Filter.N.Name and Filter.N.Value.M.
func parseEC2Filters(form map[string][]string) ([]ec2Filter, error) {
	byIndex := make(map[int]*ec2Filter)
	for k := range form {
		rest, ok := strings.CutPrefix(k, "Filter.")
		if !ok {
			continue
		}
		ns, field, ok := strings.Cut(rest, ".")
		n, err := strconv.Atoi(ns)
		if !ok || err != nil {
			return nil, ec2Err("InvalidParameterValue", "The parameter %s is not recognized", k)
		}
		if byIndex[n] == nil {
			byIndex[n] = &ec2Filter{}
		}
		if field == "Name" {
			byIndex[n].name = first(form[k])
		}
	}
	var filters []ec2Filter
	for _, n := range slices.Sorted(maps.Keys(byIndex)) {
		f := byIndex[n]
		f.values = indexedValues(form, fmt.Sprintf("Filter.%d.Value.", n))
		if f.name == "" {
			return nil, ec2Err("InvalidParameterValue", "The filter 'null' is invalid")
		}
		if !knownEC2Filter(f.name) {
			return nil, ec2Err("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		filters = append(filters, *f)
	}
	return filters, nil
}

func knownEC2Filter(name string) bool {
	switch name {
	case "instance-id", "instance-state-name", "instance-state-code", "private-ip-address",
		"ip-address", "availability-zone", "tag-key", "tag-value":
		return true
	}
	return strings.HasPrefix(name, "tag:")
}

// matchesFilters reports whether in matches every filter (filters AND,
// values of one filter OR, values may use the wildcards * and ?).
func matchesFilters(in EC2Instance, filters []ec2Filter) bool {
	for _, f := range filters {
		var fields []string
		switch {
		case f.name == "instance-id":
			fields = []string{in.ID}
		case f.name == "instance-state-name":
			fields = []string{in.State}
		case f.name == "instance-state-code":
			fields = []string{strconv.Itoa(ec2StateCodes[in.State])}
		case f.name == "private-ip-address":
			fields = []string{in.PrivateIP}
		case f.name == "ip-address":
			fields = []string{in.PublicIP}
		case f.name == "availability-zone":
			fields = []string{in.AvailabilityZone}
		case f.name == "tag-key":
			fields = sortedKeys(in.Tags)
		case f.name == "tag-value":
			fields = slices.Collect(maps.Values(in.Tags))
		default: // tag:KEY
			if v, ok := in.Tags[strings.TrimPrefix(f.name, "tag:")]; ok {
				fields = []string{v}
			}
		}
		if !slices.ContainsFunc(fields, func(field string) bool {
			return slices.ContainsFunc(f.values, func(pat string) bool { return wildcardMatch(pat, field) })
		}) {
			return false
		}
	}
	return true
}

// wildcardMatch reports whether s matches pattern, where * matches any
// run of characters and ? any one character, as in EC2 filter values.
func wildcardMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	// Iterative matching with backtracking to the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// getConsoleOutput implements EC2 GetConsoleOutput: the InstanceId
// parameter (required), Latest (accepted; the fake keeps one output) and
// DryRun.
func (s *Server) getConsoleOutput(req *request) (any, error) {
	form := req.form
	if dry, _ := strconv.ParseBool(first(form["DryRun"])); dry {
		return nil, &apiError{http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."}
	}
	id := first(form["InstanceId"])
	switch {
	case id == "":
		return nil, ec2Err("MissingParameter", "The request must contain the parameter InstanceId")
	case !ec2InstanceIDPattern.MatchString(id):
		return nil, ec2Err("InvalidInstanceID.Malformed", "Invalid id: %q", id)
	}
	if v := first(form["Latest"]); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter latest is invalid.", v)
		}
	}
	e, ok := s.ec2Instance(req.region, id)
	if !ok {
		return nil, ec2Err("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	out := ec2GetConsoleOutputResponse{RequestID: req.requestID, InstanceID: id, Timestamp: s.now().UTC().Format(time.RFC3339)}
	if e.in.ConsoleOutput != "" {
		out.Output = base64.StdEncoding.EncodeToString([]byte(e.in.ConsoleOutput))
	}
	return out, nil
}

// The XML shapes below follow the EC2 query protocol (the SDK's
// service/ec2 deserializers).

type ec2DescribeInstancesResponse struct {
	XMLName        xml.Name          `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
	RequestID      string            `xml:"requestId"`
	ReservationSet ec2ReservationSet `xml:"reservationSet"`
	NextToken      string            `xml:"nextToken,omitempty"`
}

type ec2GetConsoleOutputResponse struct {
	XMLName    xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ GetConsoleOutputResponse"`
	RequestID  string   `xml:"requestId"`
	InstanceID string   `xml:"instanceId"`
	Timestamp  string   `xml:"timestamp"`
	Output     string   `xml:"output,omitempty"`
}

type ec2ReservationSet struct {
	Items []ec2Reservation `xml:"item"`
}

type ec2Reservation struct {
	ReservationID string          `xml:"reservationId"`
	OwnerID       string          `xml:"ownerId"`
	GroupSet      struct{}        `xml:"groupSet"`
	InstancesSet  ec2InstancesSet `xml:"instancesSet"`
}

type ec2InstancesSet struct {
	Items []ec2InstanceXML `xml:"item"`
}

type ec2State struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type ec2Placement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type ec2TagSet struct {
	Items []ec2Tag `xml:"item"`
}

type ec2InstanceXML struct {
	InstanceID       string       `xml:"instanceId"`
	ImageID          string       `xml:"imageId"`
	InstanceState    ec2State     `xml:"instanceState"`
	PrivateDNSName   string       `xml:"privateDnsName"`
	DNSName          string       `xml:"dnsName"`
	InstanceType     string       `xml:"instanceType"`
	LaunchTime       string       `xml:"launchTime"`
	Placement        ec2Placement `xml:"placement"`
	PrivateIPAddress string       `xml:"privateIpAddress,omitempty"`
	IPAddress        string       `xml:"ipAddress,omitempty"`
	Architecture     string       `xml:"architecture"`
	TagSet           ec2TagSet    `xml:"tagSet"`
}

type ec2ErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []ec2Error `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type ec2Error struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func (e *ec2Entry) toXML() ec2Reservation {
	in := e.in
	sum := sha256.Sum256([]byte(in.ID))
	x := ec2InstanceXML{
		InstanceID:       in.ID,
		ImageID:          "ami-" + hex.EncodeToString(sum[:])[:17],
		InstanceState:    ec2State{Code: ec2StateCodes[in.State], Name: in.State},
		InstanceType:     cmp.Or(in.InstanceType, "t3.micro"),
		LaunchTime:       e.launchedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Placement:        ec2Placement{AvailabilityZone: in.AvailabilityZone, Tenancy: "default"},
		PrivateIPAddress: in.PrivateIP,
		IPAddress:        in.PublicIP,
		Architecture:     "x86_64",
	}
	if in.PrivateIP != "" {
		x.PrivateDNSName = "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + "." + in.Region + ".compute.internal"
	}
	if in.PublicIP != "" {
		x.DNSName = "ec2-" + strings.ReplaceAll(in.PublicIP, ".", "-") + "." + in.Region + ".compute.amazonaws.com"
	}
	for _, k := range sortedKeys(in.Tags) {
		x.TagSet.Items = append(x.TagSet.Items, ec2Tag{Key: k, Value: in.Tags[k]})
	}
	return ec2Reservation{
		ReservationID: "r-" + hex.EncodeToString(sum[8:])[:17],
		OwnerID:       fakeAccountID,
		InstancesSet:  ec2InstancesSet{Items: []ec2InstanceXML{x}},
	}
}
