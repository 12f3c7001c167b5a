package deploy_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"bastion/upstream/provider"
)

// TestIAMActionsMatchRegistry checks the provider registry against the code
// and the shipped policy: each provider package calls exactly the IAM
// actions its descriptor lists, and the policy allows every one of them.
func TestIAMActionsMatchRegistry(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	s := newScanner()
	if err := s.scanTree(root); err != nil {
		t.Fatal(err)
	}
	var allowed []string
	for _, st := range readPolicy(t).Statement {
		allowed = append(allowed, st.Action...)
	}
	for _, d := range provider.All() {
		t.Run(d.Name, func(t *testing.T) {
			dir := d.Dir
			if dir == "" {
				t.Fatalf("provider %q has no Dir", d.Name)
			}
			var called []string
			for _, c := range s.calls {
				if strings.HasPrefix(filepath.ToSlash(c.pos), dir+"/") && !slices.Contains(called, c.action) {
					called = append(called, c.action)
				}
			}
			slices.Sort(called)
			want := slices.Sorted(slices.Values(d.IAMActions))
			if !slices.Equal(called, want) {
				t.Errorf("%s calls %v, want the descriptor's IAMActions %v", dir, called, want)
			}
			for _, a := range d.IAMActions {
				if !slices.Contains(allowed, a) {
					t.Errorf("%s does not allow %s, which provider %s calls", policyFile, a, d.Name)
				}
			}
		})
	}
}
