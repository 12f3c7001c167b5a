package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
	line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	from  string // the FROM line's arguments
	instr []instruction
}

// parseDockerfile splits a Dockerfile into stages. Comments and blank lines
// are dropped; a trailing backslash continues an instruction.
func parseDockerfile(data []byte) ([]stage, error) {
	var stages []stage
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cur *instruction
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		more, again := strings.CutSuffix(line, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(more, " ")
			cur = &instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: n}
		} else {
			cur.args += " " + strings.TrimSpace(more)
		}
		if again {
			continue
		}
		if cur.cmd == "FROM" {
			stages = append(stages, stage{from: cur.args})
		} else if len(stages) == 0 {
			if cur.cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before FROM", cur.line, cur.cmd)
			}
		} else {
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, *cur)
		}
		cur = nil
	}
	return stages, sc.Err()
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes an instruction's JSON array (exec form); ok is false for
// the shell form.
func execForm(args string) ([]string, bool) {
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, false
	}
	return v, true
}

// dockerignore is a .dockerignore file's rules, matched as Docker does
// (moby/patternmatcher): paths relative to the context root, "*" and "?"
// within one path element, "**" across any number of them, a later "!"
// rule re-including, and a path excluded when it or a parent folder is.
type dockerignore []struct {
	re      *regexp.Regexp
	exclude bool
}

func parseDockerignore(data []byte) dockerignore {
	var d dockerignore
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exclude := true
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			exclude, line = false, rest
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re      *regexp.Regexp
			exclude bool
		}{regexp.MustCompile(re.String()), exclude})
	}
	return d
}

// excludes reports whether the file p (slash-separated, relative to the
// context) stays out of the build context.
func (d dockerignore) excludes(p string) bool {
	for dir := p; dir != "."; dir = path.Dir(dir) {
		if d.matches(dir) {
			return true
		}
	}
	return false
}

func (d dockerignore) matches(p string) bool {
	out := false
	for _, r := range d {
		if r.re.MatchString(p) {
			out = r.exclude
		}
	}
	return out
}

func TestDockerignoreMatcher(t *testing.T) {
	d := parseDockerignore([]byte("# c\n.git\n/bastion\n**/*.pem\nkeys/*\n!keys/ok.pub\n"))
	for p, want := range map[string]bool{
		".git/config":    true,
		"bastion":        true,
		"cmd/bastion/x":  false,
		"a/b/c.pem":      true,
		"c.pem":          true,
		"keys/id":        true,
		"keys/ok.pub":    false,
		"go.mod":         false,
		"sub/.git/x":     false,
		"keys2/anything": false,
	} {
		if got := d.excludes(p); got != want {
			t.Errorf("excludes(%q) = %v, want %v", p, got, want)
		}
	}
}

var secretArg = regexp.MustCompile(`(?i)(secret|password|passwd|token|access_key|credential|private)`)

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(data)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := &stages[0], &stages[len(stages)-1]

	t.Run("build stage", func(t *testing.T) {
		mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
		if goVersion == nil {
			t.Fatal("go.mod has no go directive")
		}
		if want := "golang:" + string(goVersion[1]); !strings.HasPrefix(build.from, want) {
			t.Errorf("FROM %s, want %s (go.mod's go version)", build.from, want)
		}
		var compiled bool
		for _, r := range build.all("RUN") {
			a := r.args
			if !strings.Contains(a, "go build") {
				continue
			}
			compiled = true
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/bastion"} {
				if !strings.Contains(a, want) {
					t.Errorf("line %d: go build without %s", r.line, want)
				}
			}
			if !strings.Contains(a, `-ldflags "-s -w`) && !strings.Contains(a, `-ldflags="-s -w`) {
				t.Errorf(`line %d: go build without -ldflags "-s -w"`, r.line)
			}
			// The image has no .git: the version comes from build args.
			for _, want := range []string{"-X main.buildVersion=${VERSION}", "-X main.buildRevision=${VCS_REVISION}"} {
				if !strings.Contains(a, want) {
					t.Errorf("line %d: go build without %s", r.line, want)
				}
			}
		}
		if !compiled {
			t.Errorf("the build stage has no RUN go build")
		}
	})

	t.Run("runtime stage", func(t *testing.T) {
		base := strings.Fields(final.from)[0]
		if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
			t.Errorf("FROM %s, want gcr.io/distroless/static…:nonroot or scratch", base)
		}
		users := final.all("USER")
		if len(users) == 0 {
			t.Fatalf("no USER: the image would run as root")
		}
		user, _, _ := strings.Cut(users[len(users)-1].args, ":")
		if n, err := strconv.Atoi(user); user == "root" || (err == nil && n == 0) {
			t.Errorf("USER %s, want a non-root user", users[len(users)-1].args)
		}
		for _, c := range final.all("COPY") {
			if !strings.Contains(c.args, "--from=") {
				t.Errorf("line %d: COPY %s into the runtime image from the build context; copy built files from the build stage only", c.line, c.args)
			}
		}
		ports := strings.Fields(strings.Join(argsOf(final.all("EXPOSE")), " "))
		for _, p := range []string{"2222", "9090"} {
			if !slices.Contains(ports, p) && !slices.Contains(ports, p+"/tcp") {
				t.Errorf("EXPOSE %v, want %s", ports, p)
			}
		}
		var vols []string
		for _, v := range final.all("VOLUME") {
			if list, ok := execForm(v.args); ok {
				vols = append(vols, list...)
			} else {
				vols = append(vols, strings.Fields(v.args)...)
			}
		}
		for _, v := range []string{"/etc/bastion", "/var/lib/bastion"} {
			if !slices.Contains(vols, v) {
				t.Errorf("VOLUME %v, want %s", vols, v)
			}
		}
		hc := final.all("HEALTHCHECK")
		switch {
		case len(hc) == 0:
			t.Errorf("no HEALTHCHECK: say NONE (and why) or give an exec-form check")
		case hc[0].args != "NONE":
			// Options (--interval=…) come before CMD.
			_, cmd, _ := strings.Cut(hc[0].args, "CMD ")
			if _, ok := execForm(strings.TrimSpace(cmd)); !ok {
				t.Errorf("HEALTHCHECK %s: the image has no shell, want NONE or CMD in exec form", hc[0].args)
			}
		}
	})

	t.Run("entrypoint and cmd", func(t *testing.T) {
		ep, cmd := final.all("ENTRYPOINT"), final.all("CMD")
		if len(ep) != 1 || len(cmd) != 1 {
			t.Fatalf("want one ENTRYPOINT and one CMD, got %d and %d", len(ep), len(cmd))
		}
		entry, ok := execForm(ep[0].args)
		if !ok || len(entry) != 1 || path.Base(entry[0]) != "bastion" {
			t.Errorf("ENTRYPOINT %s, want [\"/…/bastion\"] in exec form", ep[0].args)
		}
		args, ok := execForm(cmd[0].args)
		if !ok {
			t.Fatalf("CMD %s, want exec form", cmd[0].args)
		}
		cfgPath, ok := configArg(args, "serve")
		if !ok || !strings.HasPrefix(cfgPath, "/etc/bastion/") {
			t.Errorf("CMD %q, want serve --config /etc/bastion/…", args)
		}
		// The Deployment runs the image's default command.
		if c := container(t, render(t).deploy, "bastion"); !slices.Equal(c.Args, args) {
			t.Errorf("Deployment args %q, Dockerfile CMD %q", c.Args, args)
		}
	})

	t.Run("no secrets", func(t *testing.T) {
		for i, s := range stages {
			if len(s.all("ADD")) > 0 {
				t.Errorf("stage %d uses ADD; use COPY (ADD fetches URLs and unpacks archives)", i)
			}
			for _, in := range slices.Concat(s.all("ENV"), s.all("ARG")) {
				name, _, _ := strings.Cut(in.args, "=")
				if secretArg.MatchString(name) {
					t.Errorf("line %d: %s %s: secrets must not be build arguments or image environment", in.line, in.cmd, in.args)
				}
			}
			for _, c := range s.all("COPY") {
				if secretArg.MatchString(c.args) || strings.Contains(c.args, "_ed25519") || strings.Contains(c.args, ".pem") {
					t.Errorf("line %d: COPY %s looks like it copies a key", c.line, c.args)
				}
			}
		}
		ignore, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
		if err != nil {
			t.Fatalf(".dockerignore: %v", err)
		}
		d := parseDockerignore(ignore)
		for _, p := range []string{
			".git/config",
			".env",
			".aws/credentials",
			"demo-state/bastion_ed25519",
			"config/testdata/keys/static_ed25519",
			"keys/id_ed25519",
			"keys/id_rsa",
			"tls/server.pem",
			"tls/server.key",
			"bastion",
		} {
			if !d.excludes(p) {
				t.Errorf(".dockerignore lets %s into the build context", p)
			}
		}
		for _, p := range []string{"go.mod", "go.sum", "cmd/bastion/main.go", "config/config.go", "internal/awsfake/server.go"} {
			if d.excludes(p) {
				t.Errorf(".dockerignore leaves out %s, which the build needs", p)
			}
		}
	})
}

func argsOf(ins []instruction) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.args
	}
	return out
}
