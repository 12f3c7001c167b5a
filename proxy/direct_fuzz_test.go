package proxy

import (
	"errors"
	"strings"
	"testing"

	"bastion/upstream"
)

// FuzzParseDirectUser checks that parseDirectUser never panics and keeps
// the direct-mode login grammar (DESIGN.md, "direct login with the target
// in the user name"):
//
//   - a login longer than upstream.MaxNameLen is refused with
//     errLoginTooLong, whatever it holds, so the target part is capped too;
//   - a shorter login is direct exactly when it holds '+' or '#', and then
//     splits at the first of them: the OS user holds neither, and OS user,
//     separator and target give back the login;
//   - a login that is not direct yields nothing.
func FuzzParseDirectUser(f *testing.F) {
	for _, s := range []string{
		"alice", "ec2-user+web-1", "ec2-user#web-1.us-east-1.ec2", "+web-1", "ec2-user+", "a+b#c", "a#b+c",
		strings.Repeat("a", upstream.MaxNameLen), "u+" + strings.Repeat("a", upstream.MaxNameLen),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, login string) {
		osUser, typed, ok, err := parseDirectUser(login)
		if len(login) > upstream.MaxNameLen {
			if !errors.Is(err, errLoginTooLong) || ok || osUser != "" || typed != "" {
				t.Fatalf("parseDirectUser of %d bytes = %q, %q, %v, %v; want errLoginTooLong and nothing else", len(login), osUser, typed, ok, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("parseDirectUser(%q): %v; want no error within the cap", login, err)
		}
		if want := strings.ContainsAny(login, "+#"); ok != want {
			t.Fatalf("parseDirectUser(%q): direct %v, want %v", login, ok, want)
		}
		if !ok {
			if osUser != "" || typed != "" {
				t.Errorf("parseDirectUser(%q) = %q, %q for a jump login; want nothing", login, osUser, typed)
			}
			return
		}
		if strings.ContainsAny(osUser, "+#") {
			t.Errorf("parseDirectUser(%q): OS user %q holds a separator; want the split at the first", login, osUser)
		}
		sep := login[len(osUser)]
		if osUser+string(sep)+typed != login {
			t.Errorf("parseDirectUser(%q) = %q, %q: they do not give back the login", login, osUser, typed)
		}
		if len(typed) > upstream.MaxNameLen {
			t.Errorf("parseDirectUser(%q): target of %d bytes, over the cap", login, len(typed))
		}
	})
}
