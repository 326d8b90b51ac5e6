package notify

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

const oauthUser = "support@example.test"

func oauthSender(t *testing.T, m *devmail.Server, auth string, o config.OAuth) *Sender {
	t.Helper()
	s, err := NewSender(config.SMTP{Server: config.Server{Host: m.SMTPHost, Port: m.SMTPPort, Security: "none",
		Username: oauthUser, Auth: auth, OAuth: o}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendOne(t *testing.T, s *Sender) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Send(ctx, "", []string{"customer@example.test"}, []byte("Subject: x\r\n\r\nx\r\n"))
}

// Notifications go out with XOAUTH2 or OAUTHBEARER; a refused token delays
// them (temporary) with a line that says what to check.
func TestSendWithOAuthTokenFile(t *testing.T) {
	for _, tc := range []struct{ auth, mech string }{{config.AuthXOAuth2, "XOAUTH2"}, {config.AuthOAuthBearer, "OAUTHBEARER"}} {
		t.Run(tc.auth, func(t *testing.T) {
			m, err := devmail.Start(devmail.Options{Users: map[string]string{oauthUser: "pw"}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			m.AddToken(oauthUser, "smtp-token")
			path := filepath.Join(t.TempDir(), "smtp.token")
			os.WriteFile(path, []byte("smtp-token\n"), 0o600)
			s := oauthSender(t, m, tc.auth, config.OAuth{TokenFile: path})
			if res := sendOne(t, s); res.Temporary != nil || len(res.Accepted) != 1 {
				t.Fatalf("send: %+v", res)
			}
			m.RevokeToken("smtp-token")
			s.CloseIdle() // the open session stays logged in; the next one must log in again
			res := sendOne(t, s)
			if res.Temporary == nil || len(res.Accepted) != 0 {
				t.Fatalf("send with a revoked token: %+v", res)
			}
			msg := res.Temporary.Error()
			t.Log(msg)
			for _, want := range []string{"smtp " + m.SMTPAddr(), "refused the " + tc.mech + " token", oauthUser, "token file " + path, "smtp.oauth"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q", want)
				}
			}
			if strings.Contains(msg, "smtp-token") {
				t.Error("token leaked")
			}
		})
	}
}

func TestSendWithClientCredentials(t *testing.T) {
	m, err := devmail.Start(devmail.Options{Users: map[string]string{oauthUser: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	te := m.NewTokenEndpoint()
	te.AddClient("app", "client-s3cret", oauthUser)
	hs := httptest.NewServer(te)
	defer hs.Close()
	o := config.OAuth{TokenURL: hs.URL + "/token", ClientID: "app", ClientSecret: "client-s3cret"}
	s := oauthSender(t, m, config.AuthXOAuth2, o)
	for range 2 {
		if res := sendOne(t, s); res.Temporary != nil || len(res.Accepted) != 1 {
			t.Fatalf("send: %+v", res)
		}
	}
	if n, _ := te.Requests(); n != 1 {
		t.Errorf("%d token requests for two messages; want the token reused", n)
	}
	o.ClientSecret = "wrong"
	res := sendOne(t, oauthSender(t, m, config.AuthXOAuth2, o))
	if res.Temporary == nil || !strings.Contains(res.Temporary.Error(), "smtp.oauth: token endpoint refused the client credentials (invalid_client") {
		t.Fatalf("send with a wrong client secret: %+v", res)
	}
}
