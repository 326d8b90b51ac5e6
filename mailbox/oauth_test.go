package mailbox

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

// oauthConfig is mailboxConfig logging in with auth and the given oauth
// block instead of a password.
func oauthConfig(srv *devmail.Server, auth string, o config.OAuth) config.Mailbox {
	cfg := mailboxConfig(srv)
	cfg.IMAP.Password = ""
	cfg.IMAP.Auth = auth
	cfg.IMAP.OAuth = o
	return cfg
}

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A token file is read again for every connection: when the helper
// replaces the token, the next login uses the new one.
func TestOAuthTokenFile(t *testing.T) {
	for _, auth := range []string{config.AuthXOAuth2, config.AuthOAuthBearer} {
		t.Run(auth, func(t *testing.T) {
			srv := startServer(t, devmail.Options{})
			if err := srv.AddToken(testUser, "token-1"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "imap.token")
			writeToken(t, path, "token-1")
			cfg := oauthConfig(srv, auth, config.OAuth{TokenFile: path})
			if errs := Check(ctx10s(t), cfg).Problems; len(errs) != 0 {
				t.Fatalf("check with a valid token: %v", errs)
			}

			// The token expires at the server; until the helper writes
			// a new one, the login is refused, and the line says why.
			srv.RevokeToken("token-1")
			mech := map[string]string{config.AuthXOAuth2: "XOAUTH2", config.AuthOAuthBearer: "OAUTHBEARER"}[auth]
			msg := wantOneLine(t, Check(ctx10s(t), cfg).Problems, srv.IMAPAddr(),
				"refused the "+mech+" token", `"`+testUser+`"`, "token file "+path, "expired", "imap.oauth")
			if strings.Contains(msg, "token-1") {
				t.Fatalf("token leaked: %s", msg)
			}

			srv.AddToken(testUser, "token-2")
			writeToken(t, path, "token-2")
			if errs := Check(ctx10s(t), cfg).Problems; len(errs) != 0 {
				t.Fatalf("check after the helper refreshed the token: %v", errs)
			}
		})
	}
}

// The worker logs in with a token and processes mail.
func TestWorkerWithOAuth(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	srv.AddToken(testUser, "worker-token")
	path := filepath.Join(t.TempDir(), "imap.token")
	writeToken(t, path, "worker-token")
	deliver(t, srv, "INBOX", testMessage(1, "over XOAUTH2"))
	cs := newCursors()
	startWorker(t, oauthConfig(srv, config.AuthXOAuth2, config.OAuth{TokenFile: path}), newHandler(nil), cs)
	cs.waitLastUID(t, "support", 1)
}

// The built-in flows fetch a token from the token endpoint; a refusal there
// is one plain line naming the keys to fix.
func TestOAuthBuiltInFlow(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	te := srv.NewTokenEndpoint()
	te.AddClient("caseintake-app", "client-s3cret", testUser)
	te.AddRefreshToken("refresh-1", testUser)
	hs := httptest.NewServer(te)
	t.Cleanup(hs.Close)

	good := config.OAuth{Provider: config.ProviderMicrosoft, TokenURL: hs.URL + "/tenant/oauth2/v2.0/token",
		ClientID: "caseintake-app", ClientSecret: "client-s3cret"}
	if errs := Check(ctx10s(t), oauthConfig(srv, config.AuthXOAuth2, good)).Problems; len(errs) != 0 {
		t.Fatalf("client credentials: %v", errs)
	}
	refresh := good
	refresh.RefreshToken = "refresh-1"
	if errs := Check(ctx10s(t), oauthConfig(srv, config.AuthOAuthBearer, refresh)).Problems; len(errs) != 0 {
		t.Fatalf("refresh token: %v", errs)
	}

	bad := good
	bad.ClientSecret = "wrong-s3cret"
	msg := wantOneLine(t, Check(ctx10s(t), oauthConfig(srv, config.AuthXOAuth2, bad)).Problems, srv.IMAPAddr(),
		"imap.oauth: token endpoint refused the client credentials (invalid_client", "check imap.oauth.client_id/client_secret")
	expired := refresh
	expired.RefreshToken = "refresh-expired"
	msg += wantOneLine(t, Check(ctx10s(t), oauthConfig(srv, config.AuthXOAuth2, expired)).Problems, srv.IMAPAddr(),
		"imap.oauth: token endpoint refused the refresh token (invalid_grant", "expired or was revoked", "imap.oauth.refresh_token_file")
	for _, secret := range []string{"s3cret", "refresh-"} {
		if strings.Contains(msg, secret) {
			t.Errorf("a secret leaked: %s", msg)
		}
	}
}

// When the server stops accepting the cached token (revoked, or expired
// early), the worker's next login is refused, the token is dropped, and
// the login after that fetches a new one from the token endpoint.
func TestWorkerGetsNewTokenAfterRefusal(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	te := srv.NewTokenEndpoint()
	te.AddClient("reconnecting-app", "client-s3cret", testUser)
	hs := httptest.NewServer(te)
	t.Cleanup(hs.Close)
	cfg := oauthConfig(srv, config.AuthXOAuth2, config.OAuth{TokenURL: hs.URL + "/token",
		ClientID: "reconnecting-app", ClientSecret: "client-s3cret"})

	deliver(t, srv, "INBOX", testMessage(1, "first"))
	cs := newCursors()
	r := startWorker(t, cfg, newHandler(nil), cs)
	cs.waitLastUID(t, "support", 1)
	if n, _ := te.Requests(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}

	// Revoke every token issued so far, then drop the connection.
	for _, tok := range srv.Tokens(testUser) {
		srv.RevokeToken(tok)
	}
	if err := srv.RestartIMAP(); err != nil {
		t.Fatal(err)
	}
	deliver(t, srv, "INBOX", testMessage(2, "after the token was revoked"))
	cs.waitLastUID(t, "support", 2)
	if n, _ := te.Requests(); n != 2 {
		t.Errorf("%d token requests, want 2 (one new token after the refusal)", n)
	}
	if n := r.log.count(t, "WARN", "IMAP login with the OAuth token refused (err says which token and what to check); retrying with backoff"); n != 1 {
		t.Errorf("%d warnings that the token was refused, want 1", n)
	}
}
