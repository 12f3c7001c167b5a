package testidp

import (
	"errors"
	"html/template"
	"net/http"
	"strings"
)

// maxFormBytes bounds the verification form a client may post.
const maxFormBytes = 16 << 10

var formPage = template.Must(template.New("device").Parse(`<!doctype html>
<html><head><title>Device login</title></head><body>
<h1>Log in a device</h1>
<form method="post" action="/device">
<label>Code <input name="user_code" value="{{.}}"></label>
<label>User <input name="username"></label>
<button name="action" value="approve">Approve</button>
<button name="action" value="deny">Deny</button>
</form>
</body></html>
`))

// serveForm is the verification page: GET shows the form (the code filled
// in from verification_uri_complete's user_code), POST approves or denies.
func (i *IdP) serveForm(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		formPage.Execute(w, r.URL.Query().Get("user_code"))
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		code := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("user_code")))
		var err error
		switch r.PostForm.Get("action") {
		case "approve":
			usr, ok := i.store.users.byUsername(r.PostForm.Get("username"))
			if !ok {
				http.Error(w, "unknown user", http.StatusForbidden)
				return
			}
			err = i.store.decide(r.Context(), code, usr.Subject)
		case "deny":
			err = i.store.decide(r.Context(), code, "")
		default:
			http.Error(w, "action must be approve or deny", http.StatusBadRequest)
			return
		}
		switch {
		case errors.Is(err, errUnknownUserCode):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("done: you may close this page\n"))
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
