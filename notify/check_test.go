package notify

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

const checkUser, checkPass = "support@example.test", "smtp-pass"

var checkRcpts = []Recipient{{"team@example.test", "notify.team[0]"}, {"oncall@example.test", "notify.urgent[0]"}}

func checkServer(t *testing.T, opts devmail.Options) (*devmail.Server, config.SMTP) {
	t.Helper()
	opts.Users = map[string]string{checkUser: checkPass}
	m, err := devmail.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, config.SMTP{Server: config.Server{Host: m.SMTPHost, Port: m.SMTPPort, Security: "none",
		Username: checkUser, Password: checkPass}, EnvelopeSender: "<>"}
}

func runCheck(t *testing.T, cfg config.SMTP) *CheckReport {
	t.Helper()
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := s.Check(ctx, checkRcpts)
	for _, e := range append(r.Problems, r.Warnings...) {
		t.Log(e)
		if strings.ContainsAny(e.Error(), "\r\n") {
			t.Errorf("not one line: %q", e)
		}
		if strings.Contains(e.Error(), checkPass) {
			t.Errorf("password leaked: %s", e)
		}
	}
	return r
}

// wantOne asserts exactly one line in errs, naming the server and
// containing every fragment.
func wantOne(t *testing.T, errs []error, addr string, fragments ...string) {
	t.Helper()
	if len(errs) != 1 {
		t.Fatalf("got %d lines, want 1: %v", len(errs), errs)
	}
	for _, f := range append([]string{"smtp " + addr + ": "}, fragments...) {
		if !strings.Contains(errs[0].Error(), f) {
			t.Errorf("line lacks %q: %s", f, errs[0])
		}
	}
}

func TestCheckDryRunSendsNothing(t *testing.T) {
	m, cfg := checkServer(t, devmail.Options{})
	r := runCheck(t, cfg)
	if len(r.Problems)+len(r.Warnings) != 0 {
		t.Fatalf("problems %v, warnings %v", r.Problems, r.Warnings)
	}
	want := "logged in as " + checkUser + "; MAIL FROM:<> and 2 of 2 RCPT TO accepted (dry run, nothing sent)"
	if got := strings.Join(r.Verified, "; "); got != want {
		t.Errorf("verified %q\nwant     %q", got, want)
	}
	if sent := m.Sent(); len(sent) != 0 {
		t.Fatalf("check sent mail: %v", sent)
	}
}

func TestCheckRcptRefused(t *testing.T) {
	m, cfg := checkServer(t, devmail.Options{})
	m.FailRcpt("oncall@example.test", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"})
	m.FailRcpt("team@example.test", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"})
	r := runCheck(t, cfg)
	wantOne(t, r.Problems, m.SMTPAddr(), "RCPT TO:<oncall@example.test> (notify.urgent[0]) refused", "Relaying denied", "correct notify.urgent[0]")
	wantOne(t, r.Warnings, m.SMTPAddr(), "RCPT TO:<team@example.test> (notify.team[0]) refused for now", "Mailbox full", "wait in the outbox")
}

func TestCheckConnectionAndLoginProblems(t *testing.T) {
	m, cfg := checkServer(t, devmail.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	wrongPass := cfg
	wrongPass.Password = "wrong-pass"
	wantOne(t, runCheck(t, wrongPass).Problems, m.SMTPAddr(), `authentication as "`+checkUser+`" failed`, "535", "smtp.password_file")

	unreachable := cfg
	unreachable.Port = closedPort
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(closedPort))
	wantOne(t, runCheck(t, unreachable).Problems, addr, "connection refused", "check smtp.host and smtp.port")
}

func TestCheckTLS(t *testing.T) {
	now := time.Now()
	soon, soonCA := selfSigned(t, now.Add(5*24*time.Hour+time.Hour))
	m, cfg := checkServer(t, devmail.Options{TLSConfig: soon, ImplicitTLS: true})
	cfg.Security = "tls"
	wantOne(t, runCheck(t, cfg).Problems, m.SMTPAddr(), "TLS certificate not trusted", "certificate signed by unknown authority", "smtp.ca_file")

	cfg.CAFile = soonCA
	r := runCheck(t, cfg)
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	wantOne(t, r.Warnings, m.SMTPAddr(), "TLS certificate", "(in 5 days): renew it")

	starttls := cfg
	starttls.Security = "starttls"
	m2, plain := checkServer(t, devmail.Options{TLSConfig: soon})
	starttls.Port = plain.Port
	r = runCheck(t, starttls)
	if len(r.Problems) != 0 || len(r.Warnings) != 1 {
		t.Fatalf("starttls %s: problems %v, warnings %v", m2.SMTPAddr(), r.Problems, r.Warnings)
	}
}

func TestCheckExpiredCertificate(t *testing.T) {
	expired, ca := selfSigned(t, time.Now().Add(-time.Hour))
	m, cfg := checkServer(t, devmail.Options{TLSConfig: expired})
	cfg.Security, cfg.CAFile = "starttls", ca
	wantOne(t, runCheck(t, cfg).Problems, m.SMTPAddr(), "TLS certificate expired or not yet valid", "renew the server's certificate")
}

func TestCheckWithOAuth(t *testing.T) {
	m, cfg := checkServer(t, devmail.Options{})
	m.AddToken(checkUser, "check-token")
	path := filepath.Join(t.TempDir(), "smtp.token")
	os.WriteFile(path, []byte("check-token\n"), 0o600)
	cfg.Password, cfg.Auth, cfg.OAuth = "", config.AuthOAuthBearer, config.OAuth{TokenFile: path}
	r := runCheck(t, cfg)
	if len(r.Problems) != 0 || !strings.HasPrefix(strings.Join(r.Verified, "; "), "logged in as "+checkUser+" with OAUTHBEARER; ") {
		t.Fatalf("problems %v, verified %v", r.Problems, r.Verified)
	}
	m.RevokeToken("check-token")
	wantOne(t, runCheck(t, cfg).Problems, m.SMTPAddr(), "the server refused the OAUTHBEARER token", "token file "+path, "smtp.oauth")
}

// selfSigned is a certificate for 127.0.0.1 valid until notAfter, and the
// path of its PEM for ca_file.
func selfSigned(t *testing.T, notAfter time.Time) (*tls.Config, string) {
	t.Helper()
	server, caFile, err := devmail.TestCertificate(t.TempDir(), "caseintake test SMTP", "127.0.0.1", time.Now().Add(-time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return server, caFile
}
