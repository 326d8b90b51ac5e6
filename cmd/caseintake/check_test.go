package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

// checkSetup is one `caseintake check` configuration against devmail:
// the keys a test changes to inject a misconfiguration.
type checkSetup struct {
	imapHost     string // default devmail's
	imapSecurity string // default none
	imapCAFile   string
	imapLogin    string // YAML lines under imap: after username; default the password
	folder       string // default INBOX
	smtpPort     int    // default devmail's
}

func (c checkSetup) write(t *testing.T, m *devmail.Server) string {
	t.Helper()
	dir := t.TempDir()
	if c.imapHost == "" {
		c.imapHost = m.IMAPHost
	}
	if c.imapSecurity == "" {
		c.imapSecurity = "none"
	}
	if c.imapLogin == "" {
		c.imapLogin = "password: " + demoPassword
	}
	if c.folder == "" {
		c.folder = "INBOX"
	}
	if c.smtpPort == 0 {
		c.smtpPort = m.SMTPPort
	}
	ca := ""
	if c.imapCAFile != "" {
		ca = "ca_file: " + c.imapCAFile
	}
	cfg := fmt.Sprintf(`data_dir: %s
mailboxes:
  - name: support
    address: %s
    folder: %s
    imap:
      host: %s
      port: %d
      security: %s
      username: %s
      %s
      %s
smtp:
  host: %s
  port: %d
  security: none
  username: %s
  password: %s
  from: "Example Support <%s>"
notify:
  team: [team@example.test]
  urgent: [oncall@example.test]
api:
  token: 0123456789abcdef0123
`, filepath.Join(dir, "data"), demoSupport, c.folder, c.imapHost, m.IMAPPort, c.imapSecurity, demoSupport,
		strings.ReplaceAll(c.imapLogin, "\n", "\n      "), ca, m.SMTPHost, c.smtpPort, demoSupport, demoPassword, demoSupport)
	path := filepath.Join(dir, "caseintake.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startDevmail(t *testing.T, opts devmail.Options) *devmail.Server {
	t.Helper()
	opts.Users = map[string]string{demoSupport: demoPassword}
	m, err := devmail.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// checkLines runs check and returns its FAIL and WARN lines; it fails the
// test unless the outcome (pass or exit 1, never the bad-config status
// 2) is as wanted, or when a secret shows.
func checkLines(t *testing.T, cfgPath string, wantPass bool) (fails, warns []string) {
	t.Helper()
	out, err := runCLI(t, "check", "-c", cfgPath)
	t.Log("\n" + out)
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		t.Fatalf("check returned a config error (exit 2), want exit 1: %v", err)
	case wantPass && err != nil:
		t.Fatalf("check failed: %v", err)
	case !wantPass && (err == nil || !strings.Contains(err.Error(), "problem(s)")):
		t.Fatalf("check passed or failed oddly (%v), want a problem and exit 1", err)
	}
	for _, secret := range []string{demoPassword + "\n", "wrong-password", "client-s3cret", "0123456789abcdef0123"} {
		if strings.Contains(out, secret) {
			t.Errorf("check printed a secret (%q)", secret)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(line, "FAIL "):
			fails = append(fails, line)
		case strings.HasPrefix(line, "WARN "):
			warns = append(warns, line)
		case !strings.HasPrefix(line, "ok   "):
			t.Errorf("line is neither FAIL, WARN nor ok: %q", line)
		}
	}
	return fails, warns
}

func wantLine(t *testing.T, lines []string, fragments ...string) {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %q", len(lines), lines)
	}
	for _, f := range fragments {
		if !strings.Contains(lines[0], f) {
			t.Errorf("line lacks %q: %s", f, lines[0])
		}
	}
}

func TestCheckAllGood(t *testing.T) {
	m := startDevmail(t, devmail.Options{})
	out, err := runCLI(t, "check", "-c", checkSetup{}.write(t, m))
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ok   mailbox support: imap " + m.IMAPAddr() + " (none): logged in as " + demoSupport + ", INBOX has 0 messages, Processed will be created at start-up, Quarantine will be created at start-up\n",
		"ok   smtp " + m.SMTPAddr() + " (none): logged in as " + demoSupport + ", MAIL FROM:<> and 2 of 2 RCPT TO accepted (dry run, nothing sent)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if len(m.Sent()) != 0 {
		t.Error("check sent mail")
	}
}

// Each injected misconfiguration is one FAIL line with its fix, and exit 1.
func TestCheckInjectedProblems(t *testing.T) {
	now := time.Now()
	selfSigned, selfSignedCA := testCert(t, now.Add(90*24*time.Hour))

	t.Run("wrong password", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		fails, _ := checkLines(t, checkSetup{imapLogin: "password: wrong-password"}.write(t, m), false)
		wantLine(t, fails, `FAIL mailbox "support" (imap `+m.IMAPAddr()+`): authentication failed for user "`+demoSupport+`"`, "check imap.username and imap.password")
	})
	t.Run("host does not resolve", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		fails, _ := checkLines(t, checkSetup{imapHost: "imap.nonexistent.invalid"}.write(t, m), false)
		wantLine(t, fails, `cannot resolve host "imap.nonexistent.invalid"`, "check imap.host")
	})
	t.Run("self-signed certificate without ca_file", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{TLSConfig: selfSigned})
		fails, _ := checkLines(t, checkSetup{imapSecurity: "starttls"}.write(t, m), false)
		wantLine(t, fails, "TLS certificate not trusted (x509: certificate signed by unknown authority)", "set imap.ca_file")
		checkLines(t, checkSetup{imapSecurity: "starttls", imapCAFile: selfSignedCA}.write(t, m), true)
	})
	t.Run("missing folder", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		fails, _ := checkLines(t, checkSetup{folder: "Support"}.write(t, m), false)
		wantLine(t, fails, `folder "Support" does not exist`, "create it on the server or correct this mailbox's folder key")
	})
	t.Run("processed folder cannot be created", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		m.CreateFolder(demoSupport, "Quarantine")
		m.RefuseCreate(true)
		fails, _ := checkLines(t, checkSetup{}.write(t, m), false)
		wantLine(t, fails, `processed_folder "Processed" does not exist, and this account may not create folders`)
	})
	t.Run("unreachable SMTP", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		port := freePort(t)
		fails, _ := checkLines(t, checkSetup{smtpPort: port}.write(t, m), false)
		wantLine(t, fails, fmt.Sprintf("FAIL smtp 127.0.0.1:%d: connection refused", port), "check smtp.host and smtp.port")
	})
	t.Run("SMTP refuses RCPT", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		m.FailRcpt("oncall@example.test", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"})
		fails, _ := checkLines(t, checkSetup{}.write(t, m), false)
		wantLine(t, fails, "RCPT TO:<oncall@example.test> (notify.urgent[0]) refused", "User unknown", "correct notify.urgent[0]")
		if len(m.Sent()) != 0 {
			t.Error("check sent mail")
		}
	})
	t.Run("token endpoint refuses the client secret", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		te := m.NewTokenEndpoint()
		te.AddClient("caseintake", "client-s3cret", demoSupport)
		hs := httptest.NewServer(te)
		defer hs.Close()
		login := "auth: xoauth2\noauth:\n  token_url: " + hs.URL + "/token\n  client_id: caseintake\n  client_secret: "
		checkLines(t, checkSetup{imapLogin: login + "client-s3cret"}.write(t, m), true)
		fails, _ := checkLines(t, checkSetup{imapLogin: login + "wrong-password"}.write(t, m), false)
		wantLine(t, fails, "imap.oauth: token endpoint refused the client credentials (invalid_client", "check imap.oauth.client_id/client_secret")
	})
	t.Run("bad config", func(t *testing.T) {
		m := startDevmail(t, devmail.Options{})
		path := checkSetup{}.write(t, m)
		b, _ := os.ReadFile(path)
		os.WriteFile(path, []byte(strings.Replace(string(b), "security: none", "security: ssl", 1)), 0o600)
		fails, _ := checkLines(t, path, false)
		wantLine(t, fails, "FAIL config "+path+": mailboxes[0].imap.security: must be tls, starttls or none")
	})
}

// A certificate that expires within 14 days is one WARN line; warnings do
// not fail the check.
func TestCheckWarnsOfExpiringCertificate(t *testing.T) {
	soon, soonCA := testCert(t, time.Now().Add(6*24*time.Hour+time.Hour))
	m := startDevmail(t, devmail.Options{TLSConfig: soon})
	fails, warns := checkLines(t, checkSetup{imapSecurity: "starttls", imapCAFile: soonCA}.write(t, m), true)
	if len(fails) != 0 {
		t.Fatalf("FAIL lines: %q", fails)
	}
	wantLine(t, warns, `WARN mailbox "support" (imap `+m.IMAPAddr()+`): TLS certificate "caseintake check test" expires on`, "(in 6 days): renew it on the server before then")
}

// testCert is a self-signed certificate for 127.0.0.1 valid until
// notAfter, and the path of its PEM for ca_file.
func testCert(t *testing.T, notAfter time.Time) (*tls.Config, string) {
	t.Helper()
	server, caFile, err := devmail.TestCertificate(t.TempDir(), "caseintake check test", "127.0.0.1", time.Now().Add(-time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return server, caFile
}
