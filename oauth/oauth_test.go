package oauth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

const user = "support@example.com"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantError asserts an *Error on one line containing every fragment and
// none of the secrets.
func wantError(t *testing.T, err error, fragments ...string) {
	t.Helper()
	var oe *Error
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v (%T), want *oauth.Error", err, err)
	}
	msg := err.Error()
	t.Log(msg)
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("not one line: %q", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error lacks %q", f)
		}
	}
	for _, secret := range []string{"s3cret", "wrong-secret", "1//refresh", "Trace ID"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error contains %q", secret)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "imap.token")
	src, err := NewSource(config.OAuth{TokenFile: path}, IMAP)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(ctx(t))
	wantError(t, err, "imap.oauth: cannot read token_file "+path+" (no such file or directory)", "is the token helper running")

	for _, tc := range []struct {
		name, content, want string
		fragments           []string // error expected when set
	}{
		{"bare token, trailing newline", "tok-1\n", "tok-1", nil},
		{"helper rewrote it", "tok-2", "tok-2", nil},
		{"JSON", `{"access_token":"tok-3","expiry":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`, "tok-3", nil},
		{"JSON without expiry", `{"access_token":"tok-4"}`, "tok-4", nil},
		{"empty", "\n", "", []string{"is empty", "is the token helper running"}},
		{"expired", `{"access_token":"tok-5","expiry":"2020-01-01T00:00:00Z"}`, "", []string{"expired at 2020-01-01T00:00:00Z", "refreshing it"}},
		{"JSON without token", `{"token":"x"}`, "", []string{"without an access_token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := src.Token(ctx(t))
			if tc.fragments != nil {
				wantError(t, err, append(tc.fragments, "imap.oauth: ", path)...)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Token = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// endpoint serves a devmail token endpoint knowing client "app" (secret
// "s3cret") and refresh token "1//refresh", both for user.
func endpoint(t *testing.T) (*devmail.TokenEndpoint, string) {
	t.Helper()
	m, err := devmail.Start(devmail.Options{Users: map[string]string{user: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	te := m.NewTokenEndpoint()
	te.AddClient("app", "s3cret", user)
	te.AddRefreshToken("1//refresh", user)
	hs := httptest.NewServer(te)
	t.Cleanup(hs.Close)
	return te, hs.URL + "/contoso/oauth2/v2.0/token"
}

func TestClientCredentials(t *testing.T) {
	te, url := endpoint(t)
	cfg := config.OAuth{Provider: config.ProviderMicrosoft, TokenURL: url, ClientID: "app", ClientSecret: "s3cret"}
	src, err := NewSource(cfg, IMAP)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctx(t))
	if err != nil || !strings.HasPrefix(tok, "devmail-") {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	// Cached while valid.
	again, err := src.Token(ctx(t))
	n, scopes := te.Requests()
	if err != nil || again != tok || n != 1 {
		t.Fatalf("second Token = %q, %v after %d requests; want the cached token", again, err, n)
	}
	if !slices.Equal(scopes, []string{"https://outlook.office365.com/.default"}) {
		t.Errorf("scopes = %v", scopes)
	}
	// A token the server refused is not handed out again.
	src.Refused(tok)
	if fresh, err := src.Token(ctx(t)); err != nil || fresh == tok {
		t.Fatalf("after Refused: %q, %v", fresh, err)
	}
	// A token about to expire is renewed.
	te.SetExpiresIn(30)
	current, _ := src.Token(ctx(t)) // still the hour-long one
	src.Refused(current)
	short, _ := src.Token(ctx(t))
	renewed, err := src.Token(ctx(t))
	if err != nil || renewed == short {
		t.Fatalf("a token expiring within the margin was reused: %v", err)
	}
	if !strings.Contains(src.Describe(), "client credentials for client app at "+url) {
		t.Errorf("Describe = %q", src.Describe())
	}
}

func TestRefreshToken(t *testing.T) {
	te, url := endpoint(t)
	cfg := config.OAuth{Provider: config.ProviderMicrosoft, TokenURL: url, ClientID: "app", ClientSecret: "s3cret", RefreshToken: "1//refresh"}
	src, _ := NewSource(cfg, SMTP)
	if tok, err := src.Token(ctx(t)); err != nil || tok == "" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if _, scopes := te.Requests(); !slices.Equal(scopes, []string{"https://outlook.office.com/SMTP.Send", "offline_access"}) {
		t.Errorf("scopes = %v", scopes)
	}
	cfg.RefreshToken = "revoked"
	src, _ = NewSource(cfg, SMTP)
	_, err := src.Token(ctx(t))
	wantError(t, err, "smtp.oauth: token endpoint refused the refresh token (invalid_grant: AADSTS700082", "smtp.oauth.refresh_token_file")
}

func TestTokenEndpointErrors(t *testing.T) {
	_, url := endpoint(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/token"
	ln.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	for _, tc := range []struct {
		name      string
		cfg       config.OAuth
		fragments []string
	}{
		{"wrong secret", config.OAuth{TokenURL: url, ClientID: "app", ClientSecret: "wrong-secret"},
			[]string{"imap.oauth: token endpoint refused the client credentials (invalid_client: AADSTS7000215: Invalid client secret provided.): check imap.oauth.client_id/client_secret"}},
		{"unknown client", config.OAuth{TokenURL: url, ClientID: "nobody", ClientSecret: "wrong-secret"},
			[]string{"(unauthorized_client: AADSTS700016", "check imap.oauth.client_id/client_secret"}},
		{"unreachable", config.OAuth{TokenURL: closed, ClientID: "app", ClientSecret: "s3cret"},
			[]string{"cannot reach the token endpoint " + closed, "connection refused", "outbound HTTPS"}},
		{"not found", config.OAuth{TokenURL: notFound.URL + "/common/token", ClientID: "app", ClientSecret: "s3cret"},
			[]string{"token endpoint " + notFound.URL + "/common/token does not exist (HTTP 404): check imap.oauth.provider/tenant or token_url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSource(tc.cfg, IMAP)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(ctx(t))
			wantError(t, err, tc.fragments...)
		})
	}
}

func TestProviderPresets(t *testing.T) {
	ms := config.OAuth{Provider: config.ProviderMicrosoft, Tenant: "contoso.onmicrosoft.com", ClientID: "x"}
	if got := TokenURL(ms); got != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Errorf("microsoft TokenURL = %s", got)
	}
	if got := Scopes(ms, IMAP); !slices.Equal(got, []string{"https://outlook.office365.com/.default"}) {
		t.Errorf("microsoft client-credentials scopes = %v", got)
	}
	ms.RefreshToken = "r"
	if got := Scopes(ms, IMAP); !slices.Equal(got, []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}) {
		t.Errorf("microsoft delegated IMAP scopes = %v", got)
	}
	g := config.OAuth{Provider: config.ProviderGoogle, ClientID: "x", RefreshToken: "r"}
	if TokenURL(g) != "https://oauth2.googleapis.com/token" || !slices.Equal(Scopes(g, SMTP), []string{"https://mail.google.com/"}) {
		t.Errorf("google: %s %v", TokenURL(g), Scopes(g, SMTP))
	}
	g.Scopes = []string{"custom"}
	if !slices.Equal(Scopes(g, SMTP), []string{"custom"}) {
		t.Errorf("explicit scopes ignored")
	}
	// Shared hands out one source per configuration.
	a, _ := Shared(g, IMAP)
	b, _ := Shared(g, IMAP)
	c, _ := Shared(g, SMTP)
	if a != b || a == c {
		t.Errorf("Shared: same config gave different sources, or services share one")
	}
}

func TestXOAuth2InitialResponse(t *testing.T) {
	c, err := SASLClient(config.AuthXOAuth2, user, "tok", "imap.example.com", 993)
	if err != nil {
		t.Fatal(err)
	}
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user="+user+"\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("Start = %s %q %v", mech, ir, err)
	}
	// A refusal's JSON challenge gets the empty answer that ends the
	// exchange.
	if resp, err := c.Next([]byte(`{"status":"401"}`)); err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("Next = %q, %v", resp, err)
	}
	if _, err := SASLClient(config.AuthPlain, user, "tok", "h", 1); err == nil {
		t.Fatal("plain is not an OAuth method")
	}
}
