package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An OAuth login loads with its secrets from files and the environment,
// and needs no password.
func TestLoadOAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("client.secret", "s3cret\n")
	refresh := write("refresh.token", "1//refresh\n")
	cfg := write("caseintake.yaml", `
data_dir: /tmp/caseintake-test
mailboxes:
  - name: support
    address: support@example.com
    imap:
      host: outlook.office365.com
      auth: xoauth2
      oauth:
        provider: microsoft
        tenant: contoso.onmicrosoft.com
        client_id: 00000000-0000-0000-0000-000000000001
        client_secret_file: `+secret+`
smtp:
  host: smtp.gmail.com
  username: support@example.com
  auth: oauthbearer
  oauth:
    provider: google
    client_id: 1234.apps.googleusercontent.com
    refresh_token_file: `+refresh+`
  from: "Example Support <support@example.com>"
api:
  token: 0123456789abcdef0123
`)
	t.Setenv("CASEINTAKE_SMTP_OAUTH_CLIENT_SECRET", "from-env")
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	imap := c.Mailboxes[0].IMAP
	if imap.Auth != AuthXOAuth2 || !imap.IsOAuth() || imap.OAuth.ClientSecret != "s3cret" || imap.Username != "support@example.com" {
		t.Errorf("imap = %+v", imap)
	}
	smtp := c.SMTP.Server
	if smtp.Auth != AuthOAuthBearer || smtp.OAuth.ClientSecret != "from-env" || smtp.OAuth.RefreshToken != "1//refresh" || !smtp.OAuth.RefreshFlow() {
		t.Errorf("smtp = %+v", smtp)
	}

	// Without the environment's client secret, Google's refresh flow is
	// incomplete, and the problem names the key without the secret.
	os.Unsetenv("CASEINTAKE_SMTP_OAUTH_CLIENT_SECRET")
	_, err = Load(cfg)
	if err == nil || !strings.Contains(err.Error(), "smtp.oauth.client_secret_file: required") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "1//refresh") {
		t.Fatalf("a secret leaked: %v", err)
	}
}

// The smtp login defaults to plain, so existing configs keep working.
func TestLoadAuthDefaultsToPlain(t *testing.T) {
	c, err := Load(writeGood(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Auth != AuthPlain || c.Mailboxes[0].IMAP.Auth != AuthPlain || c.SMTP.IsOAuth() {
		t.Fatalf("auth = %q / %q", c.SMTP.Auth, c.Mailboxes[0].IMAP.Auth)
	}
}
