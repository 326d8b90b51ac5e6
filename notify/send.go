package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/oauth"
)

// Sender submits messages to the configured SMTP server.
type Sender struct {
	cfg    config.SMTP
	tls    *tls.Config
	tokens oauth.Source // nil unless smtp.auth is xoauth2 or oauthbearer

	// idle is the connection left open by the last Send, reused by the
	// next one in the same burst (a backlog queues thousands of
	// notifications: a handshake each would cost more than the mail).
	mu        sync.Mutex
	idle      *smtp.Client
	idleSince time.Time
}

// idleReuse is how long an open connection is reused; older ones are
// closed and a new one dialled (servers drop idle clients after minutes).
const idleReuse = 30 * time.Second

// NewSender prepares a sender for cfg (reading its ca_file, and setting up
// where OAuth tokens come from).
func NewSender(cfg config.SMTP) (*Sender, error) {
	t, err := cfg.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("smtp.%w", err)
	}
	s := &Sender{cfg: cfg, tls: t}
	if cfg.IsOAuth() {
		if s.tokens, err = oauth.NewSource(cfg.OAuth, oauth.SMTP); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Result is the outcome of one SMTP transaction.
type Result struct {
	Accepted  []string
	Permanent map[string]string // recipient → 5xx answer
	// Temporary is set when the transaction did not go through for the
	// recipients not listed above: a 4xx, a network error or an outage.
	Temporary error
}

// dial connects and, when configured, authenticates. ctx bounds the whole
// session: the client has no context support, so it is closed on ctx's end.
func (s *Sender) dial(ctx context.Context) (*smtp.Client, func(), error) {
	c, err := s.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return c, func() { stop(); c.Close() }, nil
}

// connect connects and, when configured, authenticates; ctx bounds just
// that.
func (s *Sender) connect(ctx context.Context) (*smtp.Client, error) {
	addr := s.cfg.Addr()
	var token string
	if s.tokens != nil {
		// Before connecting: a slow token endpoint must not hold an idle
		// SMTP connection open.
		var err error
		if token, err = s.tokens.Token(ctx); err != nil {
			return nil, fmt.Errorf("smtp %s: %w", addr, err)
		}
	}
	d := &net.Dialer{Timeout: 30 * time.Second}
	var (
		conn net.Conn
		err  error
	)
	if s.cfg.Security == "tls" {
		conn, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", addr, describeNetErr(err))
	}
	var c *smtp.Client
	if s.cfg.Security == "starttls" {
		if c, err = smtp.NewClientStartTLS(conn, s.tls); err != nil {
			return nil, fmt.Errorf("smtp %s: starttls: %w", addr, describeNetErr(err))
		}
	} else {
		c = smtp.NewClient(conn)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	err = s.auth(c, token)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("smtp %s: %w", addr, err)
	}
	return c, nil
}

// auth logs in with AUTH PLAIN when a username is set, or with the OAuth
// token over XOAUTH2 or OAUTHBEARER.
func (s *Sender) auth(c *smtp.Client, token string) error {
	if s.tokens == nil {
		if s.cfg.Username == "" {
			return nil
		}
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			return &passwordRefusedError{user: s.cfg.Username, err: err}
		}
		return nil
	}
	mech := oauth.Mechanism(s.cfg.Auth)
	if ok, offered := c.Extension("AUTH"); !ok || !slices.Contains(strings.Fields(strings.ToUpper(offered)), mech) {
		if !ok || strings.TrimSpace(offered) == "" {
			return fmt.Errorf("the server does not offer AUTH %s (it offers no AUTH at all: is this the submission port, and is TLS required first?); check smtp.port and smtp.security", mech)
		}
		return fmt.Errorf("the server does not offer AUTH %s (it offers: %s); set smtp.auth to a method it supports, or enable %s on the server", mech, offered, mech)
	}
	sc, err := oauth.SASLClient(s.cfg.Auth, s.cfg.Username, token, s.cfg.Host, s.cfg.Port)
	if err != nil {
		return err
	}
	if err := c.Auth(sc); err != nil {
		s.tokens.Refused(token)
		return &TokenRefusedError{Mech: mech, User: s.cfg.Username, Source: s.tokens.Describe(), Err: err}
	}
	return nil
}

// passwordRefusedError is a failed AUTH PLAIN.
type passwordRefusedError struct {
	user string
	err  error
}

func (e *passwordRefusedError) Error() string {
	return fmt.Sprintf("authentication as %s failed: %v", e.user, e.err)
}

func (e *passwordRefusedError) Unwrap() error { return e.err }

// TokenRefusedError is an SMTP login refused although an OAuth token was
// presented.
type TokenRefusedError struct {
	Mech   string // XOAUTH2 or OAUTHBEARER
	User   string
	Source string // where the token came from
	Err    error  // the server's answer
}

// Error says what was refused and what to check, on one line.
func (e *TokenRefusedError) Error() string {
	return fmt.Sprintf("the server refused the %s token for user %q (server said: %v); the token (from %s) has expired, was revoked, or does not allow sending mail as this user: check smtp.username, smtp.oauth and the app's SMTP permission",
		e.Mech, e.User, e.Err, e.Source)
}

// Unwrap returns the server's answer.
func (e *TokenRefusedError) Unwrap() error { return e.Err }

// Send submits data to the recipients, one RCPT at a time so that each
// recipient's answer is known: the message goes to those accepted even when
// others are refused. It reuses the connection the previous Send left open
// (see CloseIdle) and leaves its own open for the next.
func (s *Sender) Send(ctx context.Context, envFrom string, to []string, data []byte) Result {
	res := Result{Permanent: map[string]string{}}
	c, reused := s.takeIdle()
	var err error
	if reused {
		// A connection the server closed meanwhile fails here, before
		// anything was sent: dial afresh then.
		stop := context.AfterFunc(ctx, func() { c.Close() })
		err = c.Mail(envFrom, nil)
		if !stop() {
			c.Close()
			res.Temporary = fmt.Errorf("smtp %s: %w", s.cfg.Addr(), ctx.Err())
			return res
		}
		var status *smtp.SMTPError
		if err != nil && !errors.As(err, &status) {
			c.Close()
			reused = false
		}
	}
	if !reused {
		if c, err = s.connect(ctx); err != nil {
			res.Temporary = err
			return res
		}
		err = c.Mail(envFrom, nil)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	keep := false
	defer func() {
		if stop() && keep {
			s.putIdle(c)
			return
		}
		c.Close()
	}()
	if err != nil {
		if Permanent(err) {
			for _, r := range to {
				res.Permanent[r] = "MAIL FROM refused: " + err.Error()
			}
			return res
		}
		res.Temporary = fmt.Errorf("MAIL FROM: %w", err)
		return res
	}
	var accepted []string
	var tempErr error
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			if Permanent(err) {
				res.Permanent[r] = err.Error()
			} else if tempErr == nil {
				tempErr = fmt.Errorf("RCPT TO:<%s>: %w", r, err)
			}
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		res.Temporary = tempErr
		keep = c.Reset() == nil
		return res
	}
	w, err := c.Data()
	if err == nil {
		if _, err = w.Write(data); err == nil {
			err = w.Close()
		} else {
			w.Close()
		}
	}
	if err != nil {
		if Permanent(err) {
			for _, r := range accepted {
				res.Permanent[r] = "DATA refused: " + err.Error()
			}
		} else {
			res.Temporary = fmt.Errorf("DATA: %w", err)
		}
		return res
	}
	res.Accepted = accepted
	res.Temporary = tempErr
	keep = true // the transaction is over; the next MAIL may follow
	return res
}

// takeIdle returns the idle connection if there is a fresh one.
func (s *Sender) takeIdle() (*smtp.Client, bool) {
	s.mu.Lock()
	c, since := s.idle, s.idleSince
	s.idle = nil
	s.mu.Unlock()
	if c == nil {
		return nil, false
	}
	if time.Since(since) > idleReuse {
		_ = c.Quit()
		return nil, false
	}
	return c, true
}

// putIdle keeps c for the next Send (closing any other kept one).
func (s *Sender) putIdle(c *smtp.Client) {
	s.mu.Lock()
	old := s.idle
	s.idle, s.idleSince = c, time.Now()
	s.mu.Unlock()
	if old != nil {
		_ = old.Quit()
	}
}

// CloseIdle says goodbye on the connection kept open, if any: the outbox
// worker calls it when the queue is empty.
func (s *Sender) CloseIdle() {
	if c, ok := s.takeIdle(); ok {
		_ = c.Quit()
	}
}

// Permanent reports whether err is an SMTP 5xx answer: retrying is pointless.
func Permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && !se.Temporary()
}

// describeNetErr turns TLS verification errors into advice.
func describeNetErr(err error) error {
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("TLS certificate not trusted (%w): fix the server's certificate or set ca_file to the CA that signed it", certErr.Err)
	}
	return err
}
