package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/oauth"
)

// Recipient is an address the check's dry run offers in RCPT TO, with the
// config key it comes from.
type Recipient struct {
	Addr string
	Key  string // e.g. notify.team[0]
}

// CheckReport is what Sender.Check found.
type CheckReport struct {
	// Problems each fail `caseintake check`; every one is one line
	// naming the server and the fix.
	Problems []error
	// Warnings need attention but do not stop notifications (a
	// certificate about to expire, a recipient refused for now).
	Warnings []error
	// Verified lists what was checked, for the summary line.
	Verified []string
}

// Check is `caseintake check` for the SMTP server: it connects as the
// outbox worker would (DNS, TCP, TLS with certificate chain, host name and
// expiry, EHLO, AUTH with password or OAuth token), then does a dry run of
// a notification without sending one: MAIL FROM the envelope sender, RCPT
// TO each of rcpts, then RSET and QUIT (no DATA).
func (s *Sender) Check(ctx context.Context, rcpts []Recipient) *CheckReport {
	r := &CheckReport{}
	addr := s.cfg.Addr()
	problem := func(format string, args ...any) error {
		return fmt.Errorf("smtp %s: "+format, append([]any{addr}, args...)...)
	}
	var tlsState *tls.ConnectionState
	probe := &Sender{cfg: s.cfg, tls: s.tls, tokens: s.tokens}
	if s.tls != nil {
		probe.tls = s.tls.Clone()
		// Runs after the normal verification has passed.
		probe.tls.VerifyConnection = func(cs tls.ConnectionState) error {
			tlsState = &cs
			return nil
		}
	}
	c, done, err := probe.dial(ctx)
	if err != nil {
		r.Problems = append(r.Problems, problem("%s", s.describeDialError(err)))
		return r
	}
	defer done()
	if tlsState != nil {
		r.Verified = append(r.Verified, "TLS certificate valid until "+config.NotAfter(*tlsState).UTC().Format("2006-01-02"))
		for _, w := range config.ExpiringSoon(*tlsState, time.Now()) {
			r.Warnings = append(r.Warnings, problem("%s", w))
		}
	}
	switch {
	case s.tokens != nil:
		r.Verified = append(r.Verified, "logged in as "+s.cfg.Username+" with "+oauth.Mechanism(s.cfg.Auth))
	case s.cfg.Username != "":
		r.Verified = append(r.Verified, "logged in as "+s.cfg.Username)
	default:
		r.Verified = append(r.Verified, "no login (smtp.username is empty)")
	}

	from := s.cfg.EnvelopeSender
	if from == config.NullEnvelopeSender {
		from = ""
	}
	if err := c.Mail(from, nil); err != nil {
		r.Problems = append(r.Problems, problem("MAIL FROM:<%s> refused (%v); set smtp.envelope_sender to an address smtp.username may send as", from, oneLine(err)))
		c.Quit()
		return r
	}
	accepted := 0
	for _, rc := range rcpts {
		err := c.Rcpt(rc.Addr, nil)
		switch {
		case err == nil:
			accepted++
		case Permanent(err):
			r.Problems = append(r.Problems, problem("RCPT TO:<%s> (%s) refused (%v): notifications to it would bounce; correct %s, or let smtp.username send to it", rc.Addr, rc.Key, oneLine(err), rc.Key))
		default:
			r.Warnings = append(r.Warnings, problem("RCPT TO:<%s> (%s) refused for now (%v): notifications to it would wait in the outbox", rc.Addr, rc.Key, oneLine(err)))
		}
	}
	r.Verified = append(r.Verified, fmt.Sprintf("MAIL FROM:<%s> and %d of %d RCPT TO accepted (dry run, nothing sent)", from, accepted, len(rcpts)))
	if err := c.Reset(); err != nil {
		r.Warnings = append(r.Warnings, problem("RSET after the dry run failed: %v", oneLine(err)))
	}
	c.Quit()
	return r
}

// describeDialError turns a failed connection or login into what to do.
func (s *Sender) describeDialError(err error) string {
	var (
		dnsErr    *net.DNSError
		certErr   *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostErr   x509.HostnameError
		recordErr tls.RecordHeaderError
		oauthErr  *oauth.Error
		refused   *TokenRefusedError
		pwErr     *passwordRefusedError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &oauthErr):
		return oauthErr.Error()
	case errors.As(err, &refused):
		return refused.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing accepts connections there; check smtp.host and smtp.port, and that the server is running"
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve host %q (%v); check smtp.host", s.cfg.Host, dnsErr)
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("TLS certificate not trusted (%v); if the server uses a private or self-signed CA, set smtp.ca_file to that CA's PEM certificate", unknownCA)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Sprintf("TLS certificate expired or not yet valid (%v); renew the server's certificate or check the clocks", invalid)
	case errors.As(err, &hostErr):
		return fmt.Sprintf("TLS certificate is not valid for host %q (%v); set smtp.host to a name the certificate lists", s.cfg.Host, hostErr)
	case errors.As(err, &certErr):
		return fmt.Sprintf("TLS certificate invalid (%v); fix the server's certificate, or set smtp.ca_file to the CA that issued it", certErr.Err)
	case errors.As(err, &recordErr):
		return "server did not answer with TLS; check smtp.security (tls usually on port 465, starttls on 587) and smtp.port"
	case errors.As(err, &pwErr):
		return fmt.Sprintf("authentication as %q failed (server said: %v); check smtp.username and smtp.password / smtp.password_file", s.cfg.Username, oneLine(pwErr.err))
	case errors.As(err, &netErr) && netErr.Timeout():
		return "connection timed out; check smtp.host, smtp.port and firewalls"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time; check smtp.host, smtp.port and smtp.security, and firewalls"
	}
	return oneLine(strings.TrimPrefix(err.Error(), "smtp "+s.cfg.Addr()+": "))
}

func oneLine(v any) string {
	return strings.Join(strings.Fields(fmt.Sprint(v)), " ")
}
