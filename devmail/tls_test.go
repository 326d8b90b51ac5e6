package devmail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testTLS returns a server config with a self-signed certificate for
// 127.0.0.1 and a client config trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	server, caFile, err := TestCertificate(t.TempDir(), "devmail test", "127.0.0.1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return server, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestSTARTTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	s := start(t, Options{TLSConfig: srvTLS})

	// IMAP: LOGIN is refused in plaintext, fine after STARTTLS.
	plain, err := imapclient.DialInsecure(s.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var imapErr *imap.Error
	if err := plain.Login(user, password).Wait(); !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodePrivacyRequired {
		t.Fatalf("plaintext login: %v", err)
	}
	c, err := imapclient.DialStartTLS(s.IMAPAddr(), &imapclient.Options{TLSConfig: cliTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}

	// SMTP: STARTTLS offered, AUTH and sending work over it.
	sc, err := smtp.DialStartTLS(s.SMTPAddr(), cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		t.Fatal(err)
	}
	if err := sc.SendMail(user, []string{user}, strings.NewReader(msg1)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.WaitSent(ctxT(t), 1); err != nil || string(got[0].Data) != msg1 {
		t.Fatalf("WaitSent = %v, %v", got, err)
	}
	// Deliver and Messages do not care about the public listener's TLS.
	if inbox, err := s.Messages(user, "INBOX"); err != nil || len(inbox) != 1 {
		t.Fatalf("Messages = %v, %v", inbox, err)
	}
}

func TestImplicitTLS(t *testing.T) {
	if _, err := Start(Options{ImplicitTLS: true}); err == nil {
		t.Fatal("ImplicitTLS without TLSConfig accepted")
	}
	srvTLS, cliTLS := testTLS(t)
	s := start(t, Options{TLSConfig: srvTLS, ImplicitTLS: true})

	c, err := imapclient.DialTLS(s.IMAPAddr(), &imapclient.Options{TLSConfig: cliTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}

	sc, err := smtp.DialTLS(s.SMTPAddr(), cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SendMail("", []string{"x@customer.example"}, strings.NewReader(msg1)); err != nil {
		t.Fatal(err)
	}
	if err := sc.Quit(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Sent()); n != 1 {
		t.Fatalf("Sent has %d", n)
	}
}
