package devmail

import (
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// xoauth2 is the client side of XOAUTH2, as mail clients send it.
type xoauth2 struct{ user, token string }

func (x xoauth2) Start() (string, []byte, error) {
	return mechXOAuth2, []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}
func (x xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

func TestIMAPTokenLogin(t *testing.T) {
	s := start(t, Options{Users: map[string]string{user: password, "other@example.com": "pw"}})
	if err := s.AddToken(user, "tok"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken("nobody@example.com", "tok"); err == nil {
		t.Error("a token for an unknown user was accepted")
	}
	try := func(c sasl.Client) error {
		ic, err := imapclient.DialInsecure(s.IMAPAddr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ic.Close()
		if !ic.Caps().Has("AUTH=XOAUTH2") || !ic.Caps().Has("AUTH=OAUTHBEARER") {
			t.Errorf("caps %v lack the OAuth mechanisms", ic.Caps())
		}
		if err := ic.Authenticate(c); err != nil {
			return err
		}
		_, err = ic.Select("INBOX", nil).Wait() // really logged in as user
		return err
	}
	bearer := func(u, tok string) sasl.Client {
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: u, Token: tok})
	}
	if err := try(xoauth2{user, "tok"}); err != nil {
		t.Errorf("XOAUTH2: %v", err)
	}
	if err := try(bearer(user, "tok")); err != nil {
		t.Errorf("OAUTHBEARER: %v", err)
	}
	var imapErr *imap.Error
	if err := try(xoauth2{"other@example.com", "tok"}); !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("XOAUTH2 with another user's token: %v", err)
	}
	s.RevokeToken("tok")
	if err := try(xoauth2{user, "tok"}); !errors.As(err, &imapErr) {
		t.Errorf("XOAUTH2 with a revoked token: %v", err)
	}
	var bearerErr *sasl.OAuthBearerError
	if err := try(bearer(user, "tok")); !errors.As(err, &bearerErr) || bearerErr.Status != "invalid_token" {
		t.Errorf("OAUTHBEARER with a revoked token: %v", err)
	}
}

func TestSMTPTokenLogin(t *testing.T) {
	s := start(t, Options{})
	s.AddToken(user, "tok")
	if err := send(s.SMTPAddr(), xoauth2{user, "tok"}, user, []string{user}, msg1); err != nil {
		t.Fatalf("XOAUTH2: %v", err)
	}
	var se *smtp.SMTPError
	if err := send(s.SMTPAddr(), xoauth2{user, "wrong"}, user, []string{user}, msg1); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("XOAUTH2 with a wrong token: %v", err)
	}
	if len(s.Sent()) != 1 {
		t.Errorf("%d messages sent, want 1", len(s.Sent()))
	}
}

func TestTokenEndpointIssuesUsableTokens(t *testing.T) {
	s := start(t, Options{})
	te := s.NewTokenEndpoint()
	te.AddClient("app", "client-secret", user)
	hs := httptest.NewServer(te)
	defer hs.Close()
	post := func(form url.Values) (int, string) {
		resp, err := hs.Client().PostForm(hs.URL+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"client-secret"}})
	if code != 200 || len(s.Tokens(user)) != 1 || !strings.Contains(body, s.Tokens(user)[0]) {
		t.Fatalf("%d %s", code, body)
	}
	code, body = post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"wrong"}})
	if code != 401 || !strings.Contains(body, `"invalid_client"`) {
		t.Fatalf("wrong secret: %d %s", code, body)
	}
	code, body = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}, "client_id": {"app"}, "client_secret": {"client-secret"}})
	if code != 400 || !strings.Contains(body, `"invalid_grant"`) {
		t.Fatalf("unknown refresh token: %d %s", code, body)
	}
}
