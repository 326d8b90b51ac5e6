package devmail

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// TokenEndpoint is an OAuth 2.0 token endpoint (RFC 6749 §3.2) for tests of
// the built-in client-credentials and refresh-token flows: it knows
// clients and refresh tokens, and every access token it issues is valid
// (AddToken) for the client's or refresh token's user at the Server. Serve
// it with net/http/httptest. Its errors look like Microsoft's.
type TokenEndpoint struct {
	srv *Server

	mu       sync.Mutex
	clients  map[string]tokenClient // client_id →
	refresh  map[string]string      // refresh token → user
	expires  int                    // expires_in of issued tokens, seconds
	requests int
	scopes   []string // scope of the last request
}

type tokenClient struct{ secret, user string }

// NewTokenEndpoint returns an endpoint issuing tokens for s's users that
// expire after an hour.
func (s *Server) NewTokenEndpoint() *TokenEndpoint {
	return &TokenEndpoint{srv: s, clients: map[string]tokenClient{}, refresh: map[string]string{}, expires: 3600}
}

// AddClient registers a client. With the client-credentials grant, its
// tokens are for user.
func (t *TokenEndpoint) AddClient(id, secret, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clients[id] = tokenClient{secret: secret, user: user}
}

// AddRefreshToken registers a refresh token whose access tokens are for
// user.
func (t *TokenEndpoint) AddRefreshToken(token, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refresh[token] = user
}

// SetExpiresIn sets the lifetime, in seconds, of the tokens issued from
// now on.
func (t *TokenEndpoint) SetExpiresIn(seconds int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expires = seconds
}

// Requests returns how many token requests were answered, and the scopes
// the last one asked for.
func (t *TokenEndpoint) Requests() (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests, append([]string(nil), t.scopes...)
}

// ServeHTTP answers POST requests with grant_type client_credentials or
// refresh_token (client credentials in the form or in HTTP basic auth).
func (t *TokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: POST a form.")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	t.mu.Lock()
	t.requests++
	t.scopes = strings.Fields(r.PostForm.Get("scope"))
	client, known := t.clients[id]
	refreshUser := t.refresh[r.PostForm.Get("refresh_token")]
	expires := t.expires
	t.mu.Unlock()
	if !known {
		fail(http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application with identifier '"+id+"' was not found in the directory.")
		return
	}
	if secret != client.secret {
		fail(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0000\r\nCorrelation ID: 0000")
		return
	}
	var user string
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		user = client.user
	case "refresh_token":
		if refreshUser == "" {
			fail(http.StatusBadRequest, "invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.")
			return
		}
		user = refreshUser
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
		return
	}
	b := make([]byte, 16)
	rand.Read(b)
	token := "devmail-" + hex.EncodeToString(b)
	if err := t.srv.AddToken(user, token); err != nil {
		fail(http.StatusBadRequest, "invalid_grant", "AADSTS50034: The user account does not exist.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": expires})
}
