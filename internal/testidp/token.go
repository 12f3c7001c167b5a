package testidp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// rewriteTokens serves the OP's token endpoint and, in a hostile mode,
// re-signs the ID token of a successful answer.
func (i *IdP) rewriteTokens(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := Mode(i.mode.Load())
		if m == Normal {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			out, err := i.reissue(r.Context(), body, m)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body = out
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// reissue replaces the id_token of a token response with one altered for
// mode m.
func (i *IdP) reissue(ctx context.Context, body []byte, m Mode) ([]byte, error) {
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding the token response: %w", err)
	}
	var idToken string
	if raw, ok := resp["id_token"]; !ok {
		return body, nil
	} else if err := json.Unmarshal(raw, &idToken); err != nil {
		return nil, fmt.Errorf("decoding the id_token: %w", err)
	}
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("id_token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decoding the id_token payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("decoding the id_token claims: %w", err)
	}

	sk, err := i.store.SigningKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the OP's signing key: %w", err)
	}
	key, kid := sk.Key(), sk.ID()
	switch m {
	case WrongAudience:
		claims["aud"] = []string{otherAudience}
		claims["azp"] = otherAudience
	case UnknownKey:
		key, kid = i.unknownKey, i.unknownKeyID
	case Expired:
		now := time.Now()
		claims["exp"] = now.Add(-10 * time.Minute).Unix()
		claims["iat"] = now.Add(-10*time.Minute - i.store.client.idTTL).Unix()
	}
	payload, err = json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("encoding the id_token claims: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: sk.SignatureAlgorithm(), Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(sk.SignatureAlgorithm())}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("making a signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("signing the id_token: %w", err)
	}
	signed, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("serialising the id_token: %w", err)
	}
	raw, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	resp["id_token"] = raw
	return json.Marshal(resp)
}
