package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"bastion/config"
)

const (
	// k8sDir is the kustomization's folder, relative to this package.
	k8sDir = "kubernetes"
	// configFile is the configMapGenerator source that becomes the
	// ConfigMap's config.yaml.
	configFile = "config.yaml"
	// hostKeysSecret is the Secret the Deployment mounts host keys from; it
	// is created by hand, never rendered.
	hostKeysSecret = "bastion-host-keys"
	// secretExample is the Secret's documented shape, not a resource.
	secretExample = "host-keys-secret.example.yaml"

	// defaultListen and defaultDrain are the bastion's defaults for listen
	// and limits.drain_timeout, used when config.yaml leaves them out.
	defaultListen = ":2222"
	defaultDrain  = 30 * time.Second
	// exitMargin is the least time a pod or unit must have, past the drain,
	// to exit before it is killed.
	exitMargin = 5 * time.Second
)

// apiTypes maps "apiVersion/kind" to a new object of its k8s.io/api type.
// A manifest of any other kind is an error: add its type here first.
var apiTypes = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"kustomize.config.k8s.io/v1beta1/Kustomization": func() any { return new(types.Kustomization) },
}

// decodeStrict decodes one YAML document into the type its apiVersion and
// kind name, as strictly as the API server would: duplicate keys, unknown
// fields and values of the wrong type are errors. encoding/json matches
// field names case-insensitively (the API server does not), so the object
// is also encoded back and every field of the input must come back under
// the same name with the same value.
func decodeStrict(doc []byte) (any, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("converting YAML to JSON: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	newObj, ok := apiTypes[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q of apiVersion %q", tm.Kind, tm.APIVersion)
	}
	obj := newObj()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding %s: data after the object", tm.Kind)
	}
	back, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", tm.Kind, err)
	}
	var in, out any
	if err := json.Unmarshal(js, &in); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(back, &out); err != nil {
		return nil, err
	}
	if err := keptFields(tm.Kind, in, out); err != nil {
		return nil, err
	}
	return obj, nil
}

// keptFields reports, as an error, the first value of in that out does not
// hold under the same name. A zero value that out leaves out (omitempty) is
// kept.
func keptFields(at string, in, out any) error {
	switch in := in.(type) {
	case map[string]any:
		o, ok := out.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: an object that did not decode as one", at)
		}
		keys := make([]string, 0, len(in))
		for k := range in {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ov, ok := o[k]
			if !ok {
				for ok := range o {
					if strings.EqualFold(ok, k) {
						return fmt.Errorf("%s.%s: unknown field (did you mean %s?)", at, k, ok)
					}
				}
				if isZero(in[k]) {
					continue
				}
				return fmt.Errorf("%s.%s: unknown field (misspelt, or in the wrong case?)", at, k)
			}
			if err := keptFields(at+"."+k, in[k], ov); err != nil {
				return err
			}
		}
	case []any:
		o, ok := out.([]any)
		if !ok || len(o) != len(in) {
			return fmt.Errorf("%s: a list of %d that decoded as %v", at, len(in), out)
		}
		for i := range in {
			if err := keptFields(fmt.Sprintf("%s[%d]", at, i), in[i], o[i]); err != nil {
				return err
			}
		}
	default:
		if in != nil && !reflect.DeepEqual(in, out) {
			return fmt.Errorf("%s: %v decoded as %v", at, in, out)
		}
	}
	return nil
}

func isZero(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.IsZero() || (rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.Len() == 0
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML file, dropping empty documents.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestDecodeStrictRejects(t *testing.T) {
	const good = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", good + "bogus: 1\n", "unknown field"},
		{"field in the wrong case", good + "AutomountServiceAccountToken: false\n", "did you mean automountServiceAccountToken"},
		{"nested field in the wrong case", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  Name: x\n", "did you mean name"},
		{"duplicate key", good + "metadata:\n  name: y\n", "already set"},
		{"wrong type", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [x]\n", "decoding ServiceAccount"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n", "unknown kind"},
		{"unknown apiVersion", "apiVersion: apps/v1beta1\nkind: Deployment\n", "unknown kind"},
	}
	if _, err := decodeStrict([]byte(good)); err != nil {
		t.Fatalf("decodeStrict(good) = %v, want nil", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodeStrict = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// readKustomization decodes kubernetes/kustomization.yaml strictly.
func readKustomization(t *testing.T) *types.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(data)
	if err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return obj.(*types.Kustomization)
}

// generatorSources returns the files the kustomization's generators read:
// data, not manifests.
func generatorSources(k *types.Kustomization) map[string]bool {
	src := make(map[string]bool)
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.FileSources {
			_, file, _ := strings.Cut(f, "=")
			if file == "" {
				file = f
			}
			src[path.Clean(file)] = true
		}
	}
	return src
}

// manifestFiles returns the YAML files under kubernetes/ that hold
// Kubernetes objects: all but the kustomization and its generators' inputs.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	src := generatorSources(readKustomization(t))
	var files []string
	err := filepath.WalkDir(k8sDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(k8sDir, p)
		rel = filepath.ToSlash(rel)
		ext := path.Ext(rel)
		if (ext != ".yaml" && ext != ".yml") || rel == "kustomization.yaml" || src[rel] {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests under %s", k8sDir)
	}
	return files
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(k8sDir, f))
			if err != nil {
				t.Fatal(err)
			}
			docs := splitDocs(data)
			if len(docs) == 0 {
				t.Fatalf("%s holds no object", f)
			}
			for i, doc := range docs {
				if _, err := decodeStrict(doc); err != nil {
					t.Errorf("%s, document %d: %v", f, i+1, err)
				}
			}
		})
	}
}

// TestManifestsListedInKustomization checks that kustomize applies every
// manifest here, except the Secret example, which it must never apply (it
// would overwrite the real host keys with placeholders).
func TestManifestsListedInKustomization(t *testing.T) {
	k := readKustomization(t)
	listed := make(map[string]bool)
	for _, r := range k.Resources {
		listed[path.Clean(r)] = true
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
	}
	for _, f := range manifestFiles(t) {
		switch {
		case f == secretExample && listed[f]:
			t.Errorf("%s is a resource in kustomization.yaml; it must not be (placeholders, not keys)", f)
		case f != secretExample && !listed[f]:
			t.Errorf("%s is not a resource in kustomization.yaml", f)
		}
	}
	if len(k.SecretGenerator) > 0 {
		t.Errorf("kustomization.yaml has a secretGenerator; host keys must not be generated from files in git")
	}
}

// rendered is the kustomization's output, decoded.
type rendered struct {
	objects []any
	ns      *corev1.Namespace
	sa      *corev1.ServiceAccount
	cm      *corev1.ConfigMap
	deploy  *appsv1.Deployment
	svc     *corev1.Service
	pdb     *policyv1.PodDisruptionBudget
	hpa     *autoscalingv2.HorizontalPodAutoscaler
}

var renderOnce = sync.OnceValues(func() (*rendered, error) {
	fsys := filesys.MakeFsOnDisk()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	abs, err := filepath.Abs(k8sDir)
	if err != nil {
		return nil, err
	}
	m, err := k.Run(fsys, abs)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	r := new(rendered)
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		obj, err := decodeStrict(y)
		if err != nil {
			return nil, fmt.Errorf("rendered %s: %w", res.CurId(), err)
		}
		r.objects = append(r.objects, obj)
		if err := r.set(obj); err != nil {
			return nil, err
		}
	}
	return r, nil
})

// set records obj in its field of r; a second object of one kind is an
// error.
func (r *rendered) set(obj any) error {
	var dup bool
	switch o := obj.(type) {
	case *corev1.Namespace:
		dup, r.ns = r.ns != nil, o
	case *corev1.ServiceAccount:
		dup, r.sa = r.sa != nil, o
	case *corev1.ConfigMap:
		dup, r.cm = r.cm != nil, o
	case *appsv1.Deployment:
		dup, r.deploy = r.deploy != nil, o
	case *corev1.Service:
		dup, r.svc = r.svc != nil, o
	case *policyv1.PodDisruptionBudget:
		dup, r.pdb = r.pdb != nil, o
	case *autoscalingv2.HorizontalPodAutoscaler:
		dup, r.hpa = r.hpa != nil, o
	}
	if dup {
		return fmt.Errorf("rendered two objects of type %T", obj)
	}
	return nil
}

func render(t *testing.T) *rendered {
	t.Helper()
	r, err := renderOnce()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestKustomizeBuild(t *testing.T) {
	r := render(t)
	var kinds []string
	for _, o := range r.objects {
		kinds = append(kinds, reflect.TypeOf(o).Elem().Name())
	}
	sort.Strings(kinds)
	want := []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "PodDisruptionBudget", "Service", "ServiceAccount"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("rendered kinds %v, want %v (and never a Secret: the host keys are not in git)", kinds, want)
	}
	ns := r.ns.Name
	if k := readKustomization(t); k.Namespace != ns {
		t.Errorf("kustomization namespace %q, Namespace object %q", k.Namespace, ns)
	}
	for _, o := range r.objects {
		if meta := o.(metav1.Object); o != any(r.ns) && meta.GetNamespace() != ns {
			t.Errorf("%T %s: namespace %q, want %q", o, meta.GetName(), meta.GetNamespace(), ns)
		}
	}

	// The Deployment mounts the generated ConfigMap under its hashed name.
	if !strings.HasPrefix(r.cm.Name, "bastion-config-") {
		t.Errorf("ConfigMap name %q, want bastion-config-<hash>", r.cm.Name)
	}
	if v := volume(r.deploy, "config"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != r.cm.Name {
		t.Errorf("Deployment volume config = %+v, want the ConfigMap %s", v, r.cm.Name)
	}
	data, err := os.ReadFile(filepath.Join(k8sDir, configFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.cm.Data["config.yaml"]; got != string(data) {
		t.Errorf("ConfigMap config.yaml differs from %s", configFile)
	}

	// Images come from the kustomization's images: a registry and a pinned tag.
	for _, c := range allContainers(r.deploy) {
		if c.Image == "bastion" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
			t.Errorf("container %s: image %q, want a registry image with a pinned tag or digest", c.Name, c.Image)
		}
	}
}

// bastionConfig is the part of config.yaml that the manifests must agree
// with. Other keys are ignored here; config.Parse checks the whole file.
type bastionConfig struct {
	Listen        string `json:"listen"`
	HostKey       string `json:"host_key"`
	HostCAKey     string `json:"host_ca_key"`
	AdminListen   string `json:"admin_listen"`
	ProxyProtocol *struct {
		TrustedCIDRs []string `json:"trusted_cidrs"`
	} `json:"proxy_protocol"`
	Providers struct {
		EC2 *struct {
			KnownHosts string `json:"known_hosts"`
		} `json:"ec2"`
	} `json:"providers"`
	Audit struct {
		Log        string `json:"log"`
		Recordings string `json:"recordings"`
		S3         *struct {
			Bucket string `json:"bucket"`
			Prefix string `json:"prefix"`
		} `json:"s3"`
	} `json:"audit"`
	Limits struct {
		DrainTimeout string `json:"drain_timeout"`
	} `json:"limits"`
	SSO *struct {
		BindingsFile string `json:"bindings_file"`
	} `json:"sso"`
}

// deployedConfig reads config.yaml from the rendered ConfigMap.
func deployedConfig(t *testing.T) (*bastionConfig, []byte) {
	t.Helper()
	data := []byte(render(t).cm.Data["config.yaml"])
	if len(data) == 0 {
		t.Fatal("the ConfigMap has no config.yaml")
	}
	var c bastionConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	return &c, data
}

// drain returns limits.drain_timeout, or the default.
func (c *bastionConfig) drain(t *testing.T) time.Duration {
	t.Helper()
	if c.Limits.DrainTimeout == "" {
		return defaultDrain
	}
	d, err := time.ParseDuration(c.Limits.DrainTimeout)
	if err != nil {
		t.Fatalf("config.yaml limits.drain_timeout: %v", err)
	}
	return d
}

// port returns the port of a host:port listen address.
func port(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("config.yaml %s %q: %v", key, addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		t.Fatalf("config.yaml %s %q: not a fixed port", key, addr)
	}
	return int32(n)
}

// TestConfigMapConfigIsValid checks the deployed config.yaml the way
// `bastion check-config` (the initContainer) does.
func TestConfigMapConfigIsValid(t *testing.T) {
	_, data := deployedConfig(t)
	if _, err := config.Parse(data, ""); err != nil {
		t.Errorf("config.yaml in the ConfigMap is not a valid bastion config:\n%v", err)
	}
}

func allContainers(d *appsv1.Deployment) []corev1.Container {
	return slices.Concat(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers)
}

func container(t *testing.T, d *appsv1.Deployment, name string) *corev1.Container {
	t.Helper()
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("Deployment has no container %q", name)
	return nil
}

func volume(d *appsv1.Deployment, name string) *corev1.Volume {
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

// containerPort resolves a probe's or Service's port (number or name) to
// the container's port number; 0 if the container has no such port.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// mountFor returns the mount of c that holds the file p (the deepest one),
// and p relative to it.
func mountFor(c *corev1.Container, p string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(p, strings.TrimSuffix(best.MountPath, "/")+"/")
}

// configArg returns the --config value in args, after the subcommand.
func configArg(args []string, subcommand string) (string, bool) {
	if len(args) != 3 || args[0] != subcommand || args[1] != "--config" {
		return "", false
	}
	return args[2], true
}

func TestDeployment(t *testing.T) {
	r := render(t)
	d := r.deploy
	cfg, _ := deployedConfig(t)
	pod := &d.Spec.Template.Spec
	c := container(t, d, "bastion")

	t.Run("replicas", func(t *testing.T) {
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("replicas = %v, want at least 2", d.Spec.Replicas)
		}
		ru := d.Spec.Strategy.RollingUpdate
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("strategy = %+v, want RollingUpdate with maxUnavailable 0", d.Spec.Strategy)
		}
	})

	t.Run("selector", func(t *testing.T) {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Fatalf("selector %v: %v", d.Spec.Selector, err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("selector %v does not match the pod labels %v", sel, d.Spec.Template.Labels)
		}
	})

	t.Run("anti-affinity by hostname", func(t *testing.T) {
		var terms []corev1.PodAffinityTerm
		if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
			terms = a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
			for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				terms = append(terms, w.PodAffinityTerm)
			}
		}
		ok := false
		for _, term := range terms {
			sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if err == nil && term.TopologyKey == "kubernetes.io/hostname" && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("no podAntiAffinity term on kubernetes.io/hostname selecting the bastion's own pods")
		}
	})

	t.Run("ports", func(t *testing.T) {
		if got, want := containerPort(c, intstr.FromString("ssh")), port(t, "listen", cfg.Listen); got != want {
			t.Errorf("container port ssh = %d, want listen's %d", got, want)
		}
		if cfg.AdminListen == "" {
			t.Fatal("config.yaml has no admin_listen: no probes possible")
		}
		host, _, _ := net.SplitHostPort(cfg.AdminListen)
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("admin_listen %q: the kubelet probes the pod IP, listen on all interfaces (\":9090\")", cfg.AdminListen)
		}
		if got, want := containerPort(c, intstr.FromString("admin")), port(t, "admin_listen", cfg.AdminListen); got != want {
			t.Errorf("container port admin = %d, want admin_listen's %d", got, want)
		}
	})

	t.Run("probes", func(t *testing.T) {
		admin := port(t, "admin_listen", cfg.AdminListen)
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
			{"livenessProbe", c.LivenessProbe, "/healthz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: %+v, want an HTTP GET of %s", p.name, p.probe, p.path)
				continue
			}
			if got := p.probe.HTTPGet.Path; got != p.path {
				t.Errorf("%s path = %q, want %q", p.name, got, p.path)
			}
			if got := containerPort(c, p.probe.HTTPGet.Port); got != admin {
				t.Errorf("%s port %v = container port %d, want the admin port %d", p.name, p.probe.HTTPGet.Port.String(), got, admin)
			}
		}
	})

	t.Run("termination grace covers the drain", func(t *testing.T) {
		var preStop time.Duration
		if l := c.Lifecycle; l != nil && l.PreStop != nil {
			if l.PreStop.Sleep == nil {
				t.Fatalf("preStop %+v: the image has no shell; use sleep", l.PreStop)
			}
			preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
		want := preStop + cfg.drain(t) + exitMargin
		if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < want {
			t.Errorf("terminationGracePeriodSeconds = %v, want at least %v (preStop %v + limits.drain_timeout %v + %v)", g, want.Seconds(), preStop, cfg.drain(t), exitMargin)
		}
	})

	t.Run("check-config initContainer", func(t *testing.T) {
		path, ok := configArg(c.Args, "serve")
		if !ok || len(c.Command) != 0 {
			t.Fatalf("bastion container command %q args %q, want the image's entrypoint with args serve --config FILE", c.Command, c.Args)
		}
		var check *corev1.Container
		for i, ic := range pod.InitContainers {
			if p, ok := configArg(ic.Args, "check-config"); ok {
				check = &pod.InitContainers[i]
				if p != path {
					t.Errorf("initContainer %s checks %s, serve reads %s", ic.Name, p, path)
				}
			}
		}
		if check == nil {
			t.Fatalf("no initContainer runs check-config --config %s", path)
		}
		if check.Image != c.Image {
			t.Errorf("check-config image %q, serve image %q: check with the same binary", check.Image, c.Image)
		}
		for _, ctr := range []*corev1.Container{c, check} {
			m, rel := mountFor(ctr, path)
			if m == nil || volume(d, m.Name) == nil || volume(d, m.Name).ConfigMap == nil {
				t.Errorf("container %s: %s is not on the ConfigMap volume", ctr.Name, path)
				continue
			}
			if _, ok := r.cm.Data[rel]; !ok {
				t.Errorf("container %s reads %s, but the ConfigMap has no key %q", ctr.Name, path, rel)
			}
			// check-config reads the same files serve does.
			if !reflect.DeepEqual(ctr.VolumeMounts, c.VolumeMounts) {
				t.Errorf("container %s mounts %v, serve mounts %v", ctr.Name, ctr.VolumeMounts, c.VolumeMounts)
			}
		}
	})

	t.Run("security context", func(t *testing.T) {
		psc := pod.SecurityContext
		if psc == nil {
			psc = new(corev1.PodSecurityContext)
		}
		for _, ctr := range allContainers(d) {
			sc := ctr.SecurityContext
			if sc == nil {
				t.Errorf("container %s: no securityContext", ctr.Name)
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("container %s: runAsNonRoot not true", ctr.Name)
			}
			uid := sc.RunAsUser
			if uid == nil {
				uid = psc.RunAsUser
			}
			if uid != nil && *uid == 0 {
				t.Errorf("container %s: runAsUser 0", ctr.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation not false", ctr.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container %s: readOnlyRootFilesystem not true", ctr.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("container %s: privileged", ctr.Name)
			}
			if caps := sc.Capabilities; caps == nil || !slices.Contains(caps.Drop, "ALL") || len(caps.Add) > 0 {
				t.Errorf("container %s: capabilities %+v, want drop [ALL] and no add", ctr.Name, caps)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("container %s: seccompProfile %+v, want RuntimeDefault", ctr.Name, seccomp)
			}
			if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
				t.Errorf("container %s: resources %+v, want cpu and memory requests and a memory limit", ctr.Name, ctr.Resources)
			}
		}
	})

	t.Run("host keys from the Secret", func(t *testing.T) {
		v := volume(d, "host-keys")
		if v == nil || v.Secret == nil || v.Secret.SecretName != hostKeysSecret {
			t.Fatalf("volume host-keys = %+v, want the Secret %s", v, hostKeysSecret)
		}
		if m := v.Secret.DefaultMode; m == nil || *m != 0o400 {
			t.Errorf("host-keys defaultMode = %v, want 0400", m)
		}
		items := make(map[string]string)
		for _, it := range v.Secret.Items {
			items[it.Path] = it.Key
			if it.Mode != nil {
				t.Errorf("host-keys item %s: mode %o overrides defaultMode", it.Key, *it.Mode)
			}
		}
		for _, k := range []struct{ key, path string }{{"host_key", cfg.HostKey}, {"host_ca_key", cfg.HostCAKey}} {
			m, rel := mountFor(c, k.path)
			if m == nil || m.Name != "host-keys" || !m.ReadOnly {
				t.Errorf("%s %s is not on the read-only host-keys mount: a replica would create its own key", k.key, k.path)
				continue
			}
			if _, ok := items[rel]; !ok {
				t.Errorf("%s %s: the Secret volume has no item with path %q", k.key, k.path, rel)
			}
		}
	})

	t.Run("writable state", func(t *testing.T) {
		// The root filesystem is read-only: whatever the bastion writes
		// must be on a writable volume.
		paths := map[string]string{"audit.recordings": cfg.Audit.Recordings}
		if cfg.Audit.Log != "" && cfg.Audit.Log != "stdout" {
			paths["audit.log"] = cfg.Audit.Log
		}
		if cfg.Providers.EC2 != nil {
			paths["providers.ec2.known_hosts"] = cfg.Providers.EC2.KnownHosts
		}
		for key, p := range paths {
			if p == "" {
				continue
			}
			m, _ := mountFor(c, p)
			if m == nil || m.ReadOnly {
				t.Errorf("%s %s is not on a writable volume", key, p)
				continue
			}
			if v := volume(d, m.Name); v == nil || (v.EmptyDir == nil && v.PersistentVolumeClaim == nil && v.Ephemeral == nil) {
				t.Errorf("%s %s: volume %s is not emptyDir or a claim", key, p, m.Name)
			}
		}
	})

	t.Run("service account", func(t *testing.T) {
		if pod.ServiceAccountName != r.sa.Name {
			t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, r.sa.Name)
		}
	})
}

func TestHostKeysSecretExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(k8sDir, secretExample))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		t.Fatalf("%s holds a %T, want a Secret", secretExample, obj)
	}
	if s.Name != hostKeysSecret {
		t.Errorf("Secret name %q, want %q", s.Name, hostKeysSecret)
	}
	var keys []string
	for k, v := range s.StringData {
		keys = append(keys, k)
		if strings.Contains(v, "PRIVATE KEY") {
			t.Errorf("%s: key %s holds a private key; it must hold a placeholder", secretExample, k)
		}
	}
	for k := range s.Data {
		t.Errorf("%s: data key %s; keep to stringData placeholders", secretExample, k)
	}
	sort.Strings(keys)
	var want []string
	for _, it := range volume(render(t).deploy, "host-keys").Secret.Items {
		want = append(want, it.Key)
	}
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		t.Errorf("%s keys %v, the Deployment mounts %v", secretExample, keys, want)
	}
}

// TestNoPrivateKeys checks that no file under deploy/ holds a private key.
func TestNoPrivateKeys(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte("PRIVATE KEY-----\n")) || bytes.Contains(data, []byte("PRIVATE KEY-----\r\n")) {
			t.Errorf("%s holds a private key", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestService(t *testing.T) {
	r := render(t)
	s, d := r.svc, r.deploy
	cfg, _ := deployedConfig(t)
	c := container(t, d, "bastion")

	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("type %q, want LoadBalancer", s.Spec.Type)
	}
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", s.Spec.Selector, d.Spec.Template.Labels)
	}
	listen := port(t, "listen", cfg.Listen)
	admin := port(t, "admin_listen", cfg.AdminListen)
	var ssh bool
	for _, p := range s.Spec.Ports {
		target := containerPort(c, p.TargetPort)
		if target == admin {
			t.Errorf("port %d exposes the admin port: keep /metrics off the internet", p.Port)
		}
		if p.Port == 22 && target == listen && p.Protocol == corev1.ProtocolTCP {
			ssh = true
		}
	}
	if !ssh {
		t.Errorf("ports %+v, want TCP 22 to the container's listen port %d", s.Spec.Ports, listen)
	}

	const pfx = "service.beta.kubernetes.io/aws-load-balancer-"
	a := s.Annotations
	for k, want := range map[string]string{
		"type":                 "external",
		"nlb-target-type":      "ip",
		"scheme":               "internet-facing",
		"healthcheck-protocol": "http",
		"healthcheck-port":     strconv.Itoa(int(admin)),
		"healthcheck-path":     "/readyz",
	} {
		if got := a[pfx+k]; got != want {
			t.Errorf("annotation %s%s = %q, want %q", pfx, k, got, want)
		}
	}

	attrs := make(map[string]string)
	for _, kv := range strings.Split(a[pfx+"target-group-attributes"], ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		attrs[k] = v
	}
	proxyProtocol := attrs["proxy_protocol_v2.enabled"] == "true" || a[pfx+"proxy-protocol"] == "*"
	if !proxyProtocol {
		t.Errorf("no PROXY protocol v2 on the NLB: want %starget-group-attributes proxy_protocol_v2.enabled=true", pfx)
	}
	// The bastion must accept the header from the NLB, and from it only.
	if cfg.ProxyProtocol == nil || len(cfg.ProxyProtocol.TrustedCIDRs) == 0 {
		t.Errorf("the NLB sends PROXY headers but config.yaml has no proxy_protocol.trusted_cidrs")
	} else {
		for _, cidr := range cfg.ProxyProtocol.TrustedCIDRs {
			_, n, err := net.ParseCIDR(cidr)
			if err != nil {
				t.Errorf("proxy_protocol.trusted_cidrs %q: %v", cidr, err)
			} else if ones, _ := n.Mask.Size(); ones == 0 {
				t.Errorf("proxy_protocol.trusted_cidrs %q trusts every address to claim any other", cidr)
			}
		}
	}
	if v, ok := attrs["deregistration_delay.timeout_seconds"]; ok {
		secs, err := strconv.Atoi(v)
		if err != nil || time.Duration(secs)*time.Second < cfg.drain(t) {
			t.Errorf("deregistration_delay.timeout_seconds %q, want at least limits.drain_timeout %v", v, cfg.drain(t))
		}
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	r := render(t)
	p, d := r.pdb, r.deploy
	if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.Type != intstr.Int || p.Spec.MinAvailable.IntVal != 1 {
		t.Errorf("minAvailable = %v, want 1", p.Spec.MinAvailable)
	}
	if p.Spec.MaxUnavailable != nil {
		t.Errorf("maxUnavailable set with minAvailable")
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the Deployment's pods %v (err %v)", p.Spec.Selector, d.Spec.Template.Labels, err)
	}
	if !reflect.DeepEqual(p.Spec.Selector, d.Spec.Selector) {
		t.Errorf("selector %v, Deployment's %v: want the same", p.Spec.Selector, d.Spec.Selector)
	}
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	r := render(t)
	h, d := r.hpa, r.deploy
	ref := h.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("scaleTargetRef %+v, want apps/v1 Deployment %s", ref, d.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("replicas %v..%d, want a minimum of at least 2", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	cpu := false
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("metrics %+v, want CPU", h.Spec.Metrics)
	}
	if b := h.Spec.Behavior; b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil || *b.ScaleDown.StabilizationWindowSeconds < 300 {
		t.Errorf("scaleDown behavior %+v: scaling down ends SSH sessions, want a stabilization window of at least 5 minutes", b)
	}
}

var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)

func TestServiceAccount(t *testing.T) {
	sa := render(t).sa
	if arn := sa.Annotations["eks.amazonaws.com/role-arn"]; !roleARN.MatchString(arn) {
		t.Errorf("annotation eks.amazonaws.com/role-arn = %q, want an IAM role ARN (IRSA)", arn)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken not false: the bastion does not use the Kubernetes API")
	}
}
