package sso

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clock is a settable clock for stores.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func binding(i int, expires time.Time) Binding {
	return Binding{Fingerprint: fmt.Sprintf("SHA256:key%05d", i), Issuer: "https://idp", Subject: fmt.Sprintf("sub-%d", i),
		Username: fmt.Sprintf("user%d", i), Groups: []string{"dev"}, Expires: expires}
}

func TestFileStoreSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sso-bindings.json")
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	s, err := OpenFileStore(path, 100, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	b := binding(1, clk.t.Add(time.Hour))
	if err := s.PutBinding(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode: got %o, want 600", got)
	}
	s2, err := OpenFileStore(path, 100, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s2.Binding(t.Context(), b.Fingerprint)
	if err != nil || !ok || got.Subject != b.Subject || got.Username != b.Username || !got.Expires.Equal(b.Expires) {
		t.Fatalf("after reopening: got %+v, %v, %v; want %+v", got, ok, err, b)
	}
	if err := s2.DeleteBinding(t.Context(), b.Fingerprint); err != nil {
		t.Fatal(err)
	}
	s3, err := OpenFileStore(path, 100, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s3.Binding(t.Context(), b.Fingerprint); ok {
		t.Error("after delete and reopening: binding still there")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("folder holds %d files, want only the bindings file (no temporary left)", len(entries))
	}
}

func TestFileStoreExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.json")
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	s, err := OpenFileStore(path, 100, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutBinding(t.Context(), binding(1, clk.t.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Binding(t.Context(), binding(1, time.Time{}).Fingerprint); !ok {
		t.Fatal("binding missing before its expiry")
	}
	clk.t = clk.t.Add(time.Minute)
	if _, ok, _ := s.Binding(t.Context(), binding(1, time.Time{}).Fingerprint); ok {
		t.Fatal("binding still honoured at its expiry")
	}
	// The next write prunes it from the file.
	if err := s.PutBinding(t.Context(), binding(2, clk.t.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "key00001") {
		t.Errorf("file still holds the expired binding: %s", data)
	}
}

func TestFileStoreCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"not json":    "{{{",
		"truncated":   `{"version":1,"bindings":[{"fingerprint":"SHA256:x"`,
		"wrong types": `{"version":1,"bindings":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenFileStore(path, 10, nil)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s", err, path)
			}
		})
	}
}

// TestFileStoreBounded fills the store with 10,000 bindings (written as a
// file, since one write per binding would rewrite it 10,000 times): one
// more is refused until one has expired, and a file written with more
// than the bound keeps only those that expire last.
func TestFileStoreBounded(t *testing.T) {
	const n = 10000
	path := filepath.Join(t.TempDir(), "b.json")
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	file := bindingsFile{Version: 1}
	for i := range n + 10 {
		exp := clk.t.Add(time.Hour + time.Duration(i)*time.Second)
		if i == n+9 {
			exp = clk.t.Add(time.Minute) // the first to expire
		}
		file.Bindings = append(file.Bindings, binding(i, exp))
	}
	data, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileStore(path, n, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != n {
		t.Fatalf("opened with %d bindings, want the bound %d", got, n)
	}
	// Evicted are the 10 that expire first: n+9, then 0 to 8.
	for _, i := range []int{n + 9, 0, 8} {
		if _, ok, _ := s.Binding(t.Context(), binding(i, time.Time{}).Fingerprint); ok {
			t.Errorf("binding %d, among the first to expire, was kept over later ones", i)
		}
	}
	if _, ok, _ := s.Binding(t.Context(), binding(9, time.Time{}).Fingerprint); !ok {
		t.Error("binding 9 was evicted; want the 10 that expire first evicted")
	}
	err = s.PutBinding(t.Context(), binding(n+100, clk.t.Add(time.Hour)))
	if !errors.Is(err, ErrFull) {
		t.Fatalf("put beyond the bound: got %v, want ErrFull", err)
	}
	// Replacing a bound key's binding is not growth.
	if err := s.PutBinding(t.Context(), binding(n-1, clk.t.Add(2*time.Hour))); err != nil {
		t.Fatalf("replacing a binding in a full store: %v", err)
	}
	clk.t = clk.t.Add(time.Hour + 15*time.Second) // bindings 9 to 15 have expired
	if err := s.PutBinding(t.Context(), binding(n+100, clk.t.Add(time.Hour))); err != nil {
		t.Fatalf("put once some expired: %v", err)
	}
	if got := s.Len(); got > n {
		t.Errorf("store holds %d bindings, want at most %d", got, n)
	}
}

// TestFileStorePerSubject: one account binding key after key keeps at
// most MaxPerSubject; the one that ends first goes.
func TestFileStorePerSubject(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	s, err := OpenFileStore(filepath.Join(t.TempDir(), "b.json"), 1000, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxPerSubject + 5 {
		b := binding(i, clk.t.Add(time.Hour+time.Duration(i)*time.Second))
		b.Subject = "one-person"
		if err := s.PutBinding(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != MaxPerSubject {
		t.Errorf("one account holds %d bindings, want %d", got, MaxPerSubject)
	}
	for i := range 5 {
		if _, ok, _ := s.Binding(t.Context(), binding(i, time.Time{}).Fingerprint); ok {
			t.Errorf("binding %d, among the first to end, was kept", i)
		}
	}
	if _, ok, _ := s.Binding(t.Context(), binding(MaxPerSubject+4, time.Time{}).Fingerprint); !ok {
		t.Error("the newest binding is missing")
	}
}

func TestFileStoreMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "b.json")
	if _, err := OpenFileStore(path, 10, nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("got %v, want the missing folder named", err)
	}
}
