package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"bastion/upstream/provider"
)

const policyFile = "iam/bastion-policy.json"

// awsService is an SDK service package whose calls need IAM permissions.
type awsService struct {
	// importPath is the package's import path.
	importPath string
	// prefix is the service's IAM action prefix.
	prefix string
	// client is the SDK client type; its operations are the methods
	// shaped Op(ctx, *OpInput, ...func(*Options)) (*OpOutput, error).
	client reflect.Type
	// actions maps an operation to the IAM actions it needs where they
	// differ from the operation's own name.
	actions map[string][]string
}

// services are the AWS service packages the bastion may call. A package
// used by the code but missing here is not seen at all: add it here, with
// its client type, when the code starts using a new service.
var services = []awsService{
	{importPath: "github.com/aws/aws-sdk-go-v2/service/lightsail", prefix: "lightsail", client: reflect.TypeFor[*lightsail.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/ec2", prefix: "ec2", client: reflect.TypeFor[*ec2.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect", prefix: "ec2-instance-connect", client: reflect.TypeFor[*ec2instanceconnect.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/s3", prefix: "s3", client: reflect.TypeFor[*s3.Client](), actions: map[string][]string{
		// S3 operations whose permission has another name (Service
		// Authorization Reference, Amazon S3).
		"HeadObject":              {"GetObject"},
		"GetObjectAttributes":     {"GetObject"},
		"HeadBucket":              {"ListBucket"},
		"ListObjects":             {"ListBucket"},
		"ListObjectsV2":           {"ListBucket"},
		"ListObjectVersions":      {"ListBucketVersions"},
		"CreateMultipartUpload":   {"PutObject"},
		"UploadPart":              {"PutObject"},
		"CompleteMultipartUpload": {"PutObject"},
		"UploadPartCopy":          {"PutObject", "GetObject"},
		"CopyObject":              {"PutObject", "GetObject"},
		"ListParts":               {"ListMultipartUploadParts"},
		"ListMultipartUploads":    {"ListBucketMultipartUploads"},
		"DeleteObjects":           {"DeleteObject"},
	}},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/ssm", prefix: "ssm", client: reflect.TypeFor[*ssm.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/dynamodb", prefix: "dynamodb", client: reflect.TypeFor[*dynamodb.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/secretsmanager", prefix: "secretsmanager", client: reflect.TypeFor[*secretsmanager.Client]()},
	{importPath: "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs", prefix: "logs", client: reflect.TypeFor[*cloudwatchlogs.Client]()},
}

// operations returns the API operations of an SDK client type, found by
// reflection: the methods shaped Op(context.Context, *OpInput,
// ...func(*Options)) (*OpOutput, error). Options, Presign helpers and the
// like are left out.
func operations(client reflect.Type) map[string]bool {
	ctxType := reflect.TypeFor[context.Context]()
	ops := make(map[string]bool)
	for i := range client.NumMethod() {
		m := client.Method(i)
		mt := m.Type // In(0) is the receiver.
		if mt.NumIn() != 4 || !mt.IsVariadic() || mt.In(1) != ctxType || mt.NumOut() != 2 {
			continue
		}
		in, out := mt.In(2), mt.Out(0)
		if in.Kind() == reflect.Pointer && in.Elem().Name() == m.Name+"Input" &&
			out.Kind() == reflect.Pointer && out.Elem().Name() == m.Name+"Output" {
			ops[m.Name] = true
		}
	}
	return ops
}

// iamActions returns the IAM actions that operation op of s needs.
func (s *awsService) iamActions(op string) []string {
	names, ok := s.actions[op]
	if !ok {
		names = []string{op}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.prefix + ":" + n
	}
	return out
}

// awsCall is one use of an AWS operation in the code.
type awsCall struct {
	action string
	pos    string
}

var (
	paginatorRe = regexp.MustCompile(`^New(\w+)Paginator$`)
	waiterRe    = regexp.MustCompile(`^New\w+Waiter$`)
)

// scanner finds the AWS operations that Go code calls, by syntax alone
// (go/parser and go/ast; golang.org/x/tools/go/packages is not a
// dependency). The heuristic, per package (folder) of non-test files:
//
//   - A package that imports a service package (in any of its files) may
//     call that service. Calls go through small consumer-side interfaces
//     (upstream/lightsail.API, recording.S3API) as often as through the
//     client itself, so the receiver's type is not checked.
//   - In such a package, every selector x.Op whose name is an operation of
//     the service's client (by reflection, see operations) is a use of Op,
//     called or passed as a method value.
//   - A paginator constructor svc.NewOpPaginator is a use of Op. A waiter
//     constructor (svc.NewXWaiter) is reported as an error: which operation
//     it polls is not in its name; map it here when the code needs one.
//
// The heuristic errs towards seeing too many calls (an unrelated method
// that happens to share an operation's name, in a package that imports the
// service), never too few, as long as the code names operations directly;
// it does not follow method names built at run time or calls made by
// another module on the bastion's behalf (the SDK's own credential
// providers: the role's trust policy covers those).
type scanner struct {
	fset  *token.FileSet
	ops   []map[string]bool // ops[i] are services[i]'s operations
	calls []awsCall
	errs  []string
	// dirs are the folders scanned (slash-separated, relative to the root).
	dirs []string
}

func newScanner() *scanner {
	s := &scanner{fset: token.NewFileSet()}
	for _, svc := range services {
		s.ops = append(s.ops, operations(svc.client))
	}
	return s
}

// skipDir reports whether the folder rel (slash-separated, relative to the
// module root) holds no code that runs in the bastion: the AWS fake (a
// server, used by tests and the demo), this package, test data, hidden
// folders.
func skipDir(rel string) bool {
	base := path.Base(rel)
	return rel == "internal/awsfake" || strings.HasPrefix(rel, "internal/awsfake/") ||
		rel == "deploy" || base == "testdata" || base == "vendor" ||
		(rel != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_")))
}

// scanTree scans every package under root.
func (s *scanner) scanTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skipDir(rel) {
			return filepath.SkipDir
		}
		return s.scanDir(p, rel)
	})
}

// scanDir scans the non-test Go files of one folder that the default build
// context compiles.
func (s *scanner) scanDir(dir, rel string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	srcs := make(map[string][]byte)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if ok, err := build.Default.MatchFile(dir, name); err != nil || !ok {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		srcs[path.Join(rel, name)] = src
	}
	if len(srcs) > 0 {
		s.dirs = append(s.dirs, rel)
	}
	return s.scanPackage(srcs)
}

// scanPackage scans the files of one package, given by name and source.
func (s *scanner) scanPackage(srcs map[string][]byte) error {
	names := make([]string, 0, len(srcs))
	for n := range srcs {
		names = append(names, n)
	}
	sort.Strings(names)
	files := make([]*ast.File, 0, len(names))
	used := make(map[int]bool) // indexes into services imported by the package
	for _, n := range names {
		f, err := parser.ParseFile(s.fset, n, srcs[n], parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, f)
		for i := range importNames(f) {
			used[i] = true
		}
	}
	for _, f := range files {
		local := importNames(f)
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			pos := s.fset.Position(sel.Sel.Pos()).String()
			if x, ok := sel.X.(*ast.Ident); ok {
				for i, pkg := range local {
					if x.Name != pkg {
						continue
					}
					if m := paginatorRe.FindStringSubmatch(name); m != nil && s.ops[i][m[1]] {
						s.add(i, m[1], pos)
					}
					if waiterRe.MatchString(name) {
						s.errs = append(s.errs, fmt.Sprintf("%s: %s.%s: a waiter; add the operations it polls to the scanner", pos, pkg, name))
					}
					return true
				}
			}
			for i := range used {
				if s.ops[i][name] {
					s.add(i, name, pos)
				}
			}
			return true
		})
	}
	return nil
}

func (s *scanner) add(svc int, op, pos string) {
	for _, a := range services[svc].iamActions(op) {
		s.calls = append(s.calls, awsCall{action: a, pos: pos})
	}
}

// importNames returns the services f imports, as index into services →
// the name f refers to the package by. Blank and dot imports are left out.
func importNames(f *ast.File) map[int]string {
	names := make(map[int]string)
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		for i, svc := range services {
			if p != svc.importPath {
				continue
			}
			name := path.Base(p)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			if name != "_" && name != "." {
				names[i] = name
			}
		}
	}
	return names
}

// actionSet returns the distinct actions of calls, sorted, each with the
// first place it is used.
func actionSet(calls []awsCall) (actions []string, where map[string]string) {
	where = make(map[string]string)
	for _, c := range calls {
		if _, ok := where[c.action]; !ok {
			where[c.action] = c.pos
			actions = append(actions, c.action)
		}
	}
	sort.Strings(actions)
	return actions, where
}

func TestScannerHeuristic(t *testing.T) {
	const lsImport = `import "github.com/aws/aws-sdk-go-v2/service/lightsail"` + "\n"
	tests := []struct {
		name  string
		files map[string]string
		want  []string
		err   string
	}{
		{
			name: "call through an interface",
			files: map[string]string{"a.go": "package p\n" + lsImport +
				"type api interface{ GetInstance(context.Context, *lightsail.GetInstanceInput, ...func(*lightsail.Options)) (*lightsail.GetInstanceOutput, error) }\n" +
				"func f(c api) { c.GetInstance(nil, &lightsail.GetInstanceInput{}) }\n"},
			want: []string{"lightsail:GetInstance"},
		},
		{
			name: "an interface method nobody calls is no use",
			files: map[string]string{"a.go": "package p\n" + lsImport +
				"type api interface{ GetInstances(context.Context, *lightsail.GetInstancesInput, ...func(*lightsail.Options)) (*lightsail.GetInstancesOutput, error) }\n"},
		},
		{
			name: "call in another file of the package",
			files: map[string]string{
				"a.go": "package p\n" + lsImport + "var _ *lightsail.Client\n",
				"b.go": "package p\nfunc f(c interface{ GetInstanceAccessDetails() }) { c.GetInstanceAccessDetails() }\n",
			},
			want: []string{"lightsail:GetInstanceAccessDetails"},
		},
		{
			name:  "no service import, no use",
			files: map[string]string{"a.go": "package p\nfunc f(c interface{ GetInstance() }) { c.GetInstance() }\n"},
		},
		{
			name: "renamed import and a method value",
			files: map[string]string{"a.go": "package p\nimport eic \"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect\"\n" +
				"func f(c *eic.Client) { g := c.SendSSHPublicKey; _ = g }\n"},
			want: []string{"ec2-instance-connect:SendSSHPublicKey"},
		},
		{
			name: "paginator",
			files: map[string]string{"a.go": "package p\nimport \"github.com/aws/aws-sdk-go-v2/service/ec2\"\n" +
				"func f(c *ec2.Client) { _ = ec2.NewDescribeInstancesPaginator(c, nil) }\n"},
			want: []string{"ec2:DescribeInstances"},
		},
		{
			name: "S3 operation with another permission name",
			files: map[string]string{"a.go": "package p\nimport \"github.com/aws/aws-sdk-go-v2/service/s3\"\n" +
				"func f(c *s3.Client) { c.HeadObject(nil, nil); c.PutObject(nil, nil) }\n"},
			want: []string{"s3:GetObject", "s3:PutObject"},
		},
		{
			name: "waiter",
			files: map[string]string{"a.go": "package p\nimport \"github.com/aws/aws-sdk-go-v2/service/ec2\"\n" +
				"func f(c *ec2.Client) { _ = ec2.NewInstanceRunningWaiter(c) }\n"},
			err: "a waiter",
		},
		{
			name: "not an operation",
			files: map[string]string{"a.go": "package p\nimport \"github.com/aws/aws-sdk-go-v2/service/s3\"\n" +
				"func f(c *s3.Client) { _ = c.Options(); _ = s3.PutObjectInput{} }\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScanner()
			srcs := make(map[string][]byte)
			for n, src := range tc.files {
				srcs[n] = []byte(src)
			}
			if err := s.scanPackage(srcs); err != nil {
				t.Fatal(err)
			}
			got, _ := actionSet(s.calls)
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions = %v, want %v", got, tc.want)
			}
			if errs := strings.Join(s.errs, "\n"); (tc.err == "") != (errs == "") || !strings.Contains(errs, tc.err) {
				t.Errorf("errors = %q, want %q", errs, tc.err)
			}
		})
	}
}

// iamPolicy is an IAM identity policy document.
type iamPolicy struct {
	Version   string
	ID        string `json:"Id"`
	Statement []iamStatement
}

type iamStatement struct {
	Sid       string
	Effect    string
	Action    stringList
	Resource  stringList
	Condition map[string]map[string]stringList
}

// stringList is an IAM value that is one string or a list of them.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings: %w", err)
	}
	*l = many
	return nil
}

func readPolicy(t *testing.T) *iamPolicy {
	t.Helper()
	data, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// NotAction, NotResource and Principal (not for identity policies) are
	// unknown fields: allow-lists only.
	dec.DisallowUnknownFields()
	var p iamPolicy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", policyFile, err)
	}
	return &p
}

var iamActionRe = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9]+$`)

func TestIAMPolicyShape(t *testing.T) {
	p := readPolicy(t)
	if p.Version != "2012-10-17" {
		t.Errorf("Version %q, want 2012-10-17", p.Version)
	}
	if len(p.Statement) == 0 {
		t.Fatal("no Statement")
	}
	sids := make(map[string]bool)
	cfg, _ := deployedConfig(t)
	for i, st := range p.Statement {
		at := fmt.Sprintf("Statement[%d] %s", i, st.Sid)
		if st.Sid == "" || sids[st.Sid] {
			t.Errorf("%s: Sid missing or repeated", at)
		}
		sids[st.Sid] = true
		if st.Effect != "Allow" {
			t.Errorf("%s: Effect %q, want Allow", at, st.Effect)
		}
		if len(st.Action) == 0 || len(st.Resource) == 0 {
			t.Errorf("%s: want Action and Resource", at)
		}
		var prefixes []string
		for _, a := range st.Action {
			if !iamActionRe.MatchString(a) {
				t.Errorf("%s: action %q: want service:Operation, no wildcards", at, a)
			}
			prefix, _, _ := strings.Cut(a, ":")
			if !slices.Contains(prefixes, prefix) {
				prefixes = append(prefixes, prefix)
			}
		}
		// Recording upload is its own statement, on its bucket alone.
		if slices.Contains(prefixes, "s3") {
			if len(prefixes) > 1 {
				t.Errorf("%s: s3 actions share a statement with %v", at, prefixes)
			}
			var want string
			if s3cfg := cfg.Audit.S3; s3cfg != nil {
				want = "arn:aws:s3:::" + s3cfg.Bucket + "/" + s3cfg.Prefix + "*"
				// ListBucket (listing a recording's pieces) is on
				// the bucket itself, narrowed to the prefix by a
				// condition.
				if slices.Equal(st.Action, stringList{"s3:ListBucket"}) {
					want = "arn:aws:s3:::" + s3cfg.Bucket
					if got := st.Condition["StringLike"]["s3:prefix"]; !slices.Equal(got, stringList{s3cfg.Prefix + "*"}) {
						t.Errorf("%s: Condition StringLike s3:prefix %q, want %q", at, got, s3cfg.Prefix+"*")
					}
				}
			}
			if !slices.Equal(st.Resource, []string{want}) {
				t.Errorf("%s: Resource %v, want [%s] (audit.s3 in the deployed config.yaml)", at, st.Resource, want)
			}
		}
		// Audit events to CloudWatch Logs: their own statement, on the
		// log group (and its streams) alone.
		if slices.Contains(prefixes, "logs") {
			if len(prefixes) > 1 {
				t.Errorf("%s: logs actions share a statement with %v", at, prefixes)
			}
			if want := "arn:aws:logs:*:*:log-group:/bastion/audit:*"; !slices.Equal(st.Resource, []string{want}) {
				t.Errorf("%s: Resource %v, want [%s] (audit.cloudwatch.log_group in config.yaml.example)", at, st.Resource, want)
			}
		}
	}
}

// TestIAMPolicyMatchesCode checks that the policy allows exactly the AWS
// operations the bastion's code calls: a new call without its permission
// fails here, and so does a permission nothing needs.
func TestIAMPolicyMatchesCode(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.HasPrefix(mod, []byte("module bastion\n")) {
		t.Fatalf("%s is not the bastion module's root (%v)", root, err)
	}
	s := newScanner()
	if err := s.scanTree(root); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.errs {
		t.Error(e)
	}
	// The scan must reach the code that calls AWS, wherever a skip rule
	// might hide it.
	dirs := []string{"upstream/secretref", "audit", "audit/recording", "cmd/bastion"}
	for _, d := range provider.All() {
		dirs = append(dirs, d.Dir)
	}
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(root, dir)); err == nil && !slices.Contains(s.dirs, dir) {
			t.Errorf("the scan skipped %s", dir)
		}
	}
	called, where := actionSet(s.calls)
	var allowed []string
	for _, st := range readPolicy(t).Statement {
		for _, a := range st.Action {
			if !slices.Contains(allowed, a) {
				allowed = append(allowed, a)
			}
		}
	}
	sort.Strings(allowed)
	for _, a := range called {
		if !slices.Contains(allowed, a) {
			t.Errorf("%s calls %s, which %s does not allow", where[a], a, policyFile)
		}
	}
	for _, a := range allowed {
		if !slices.Contains(called, a) {
			t.Errorf("%s allows %s, which no code calls", policyFile, a)
		}
	}
	t.Logf("AWS actions called: %v", called)
}
