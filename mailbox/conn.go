package mailbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-sasl"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/oauth"
)

// Stages of setting up a connection, for error reports.
const (
	stageConfig   = "config"
	stageConnect  = "connect"
	stageTLS      = "tls"
	stageGreeting = "greeting"
	stageLogin    = "login"
	stageToken    = "oauth token"
)

// dialError says at which stage setting up a connection failed.
type dialError struct {
	stage string
	addr  string
	err   error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("imap %s: %s: %v", e.addr, e.stage, e.err)
}

func (e *dialError) Unwrap() error { return e.err }

func serverAddr(s config.Server) string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// password returns the IMAP password. The config loader normally resolves
// password_file into Password; reading it here as well keeps the package
// usable with a config built by hand.
func password(s config.Server) (string, error) {
	if s.Password != "" || s.PasswordFile == "" {
		return s.Password, nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("imap.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// newTLSConfig verifies the server against the system roots plus ca_file,
// for the configured host name, with TLS 1.2 or later.
func newTLSConfig(s config.Server) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("imap.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("imap.ca_file %s: no PEM certificate in it", s.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// credentials is what a login presents: a password, or an OAuth token and
// where it came from.
type credentials struct {
	password string
	token    string
	source   oauth.Source // nil for auth plain
}

// getCredentials reads the password, or gets a current token (from the
// token file, or from the provider, reusing a cached one).
func getCredentials(ctx context.Context, s config.Server) (credentials, string, error) {
	if !s.IsOAuth() {
		pw, err := password(s)
		return credentials{password: pw}, stageConfig, err
	}
	src, err := oauth.Shared(s.OAuth, oauth.IMAP)
	if err != nil {
		return credentials{}, stageConfig, err
	}
	tok, err := src.Token(ctx)
	return credentials{token: tok, source: src}, stageToken, err
}

// tokenRefused is a login the server refused although a token was
// presented. It deliberately does not unwrap to the server's *imap.Error,
// which callers read as a wrong password.
type tokenRefused struct {
	mech   string // XOAUTH2 or OAUTHBEARER
	user   string
	source string // where the token came from
	said   string // the server's answer
}

func (e *tokenRefused) Error() string {
	return fmt.Sprintf("the server refused the %s token for user %q (server said: %s); the token (from %s) has expired, was revoked, or does not grant IMAP access to this mailbox: check imap.username, imap.oauth and the app's mailbox permissions",
		e.mech, e.user, e.said, e.source)
}

// authenticate logs in with the password, or with the token over SASL.
func authenticate(c *imapclient.Client, s config.Server, cred credentials) error {
	if cred.source == nil {
		return c.Login(s.Username, cred.password).Wait()
	}
	mech := oauth.Mechanism(s.Auth)
	if caps := c.Caps(); !caps.Has(imap.Cap("AUTH=" + mech)) {
		var offered []string
		for cp := range caps {
			if m, ok := strings.CutPrefix(string(cp), "AUTH="); ok {
				offered = append(offered, m)
			}
		}
		sort.Strings(offered)
		if len(offered) == 0 {
			return fmt.Errorf("the server does not offer AUTHENTICATE %s (it offers no SASL mechanism); set imap.auth to plain, or enable %s on the server", mech, mech)
		}
		return fmt.Errorf("the server does not offer AUTHENTICATE %s (it offers: %s); set imap.auth to a method it supports, or enable %s on the server", mech, strings.Join(offered, ", "), mech)
	}
	sc, err := oauth.SASLClient(s.Auth, s.Username, cred.token, s.Host, s.Port)
	if err != nil {
		return err
	}
	err = c.Authenticate(sc)
	if err == nil {
		return nil
	}
	var (
		imapErr   *imap.Error
		bearerErr *sasl.OAuthBearerError
	)
	switch {
	case errors.As(err, &imapErr): // NO, or BAD from servers that dislike the empty answer to their JSON challenge
		cred.source.Refused(cred.token)
		return &tokenRefused{mech: mech, user: s.Username, source: cred.source.Describe(), said: imapText(imapErr)}
	case errors.As(err, &bearerErr):
		cred.source.Refused(cred.token)
		return &tokenRefused{mech: mech, user: s.Username, source: cred.source.Describe(), said: "status " + bearerErr.Status}
	}
	return err
}

// dial connects to the server, secures the connection as configured and
// logs in, all bounded by ctx (ending ctx closes the connection, which
// unblocks every step). It returns the capabilities as advertised after
// login. newMail, when not nil, gets a non-blocking token whenever the
// server announces a new message count (EXISTS); it should have capacity 1.
func dial(ctx context.Context, s config.Server, newMail chan<- struct{}) (*imapclient.Client, imap.CapSet, error) {
	return dialObserved(ctx, s, newMail, nil)
}

// dialObserved is dial; observe, when not nil, is given the TLS connection
// state once the server's certificate has been verified (for check).
func dialObserved(ctx context.Context, s config.Server, newMail chan<- struct{}, observe func(tls.ConnectionState)) (*imapclient.Client, imap.CapSet, error) {
	addr := serverAddr(s)
	fail := func(stage string, err error) error { return &dialError{stage: stage, addr: addr, err: err} }

	cred, stage, err := getCredentials(ctx, s)
	if err != nil {
		return nil, nil, fail(stage, err)
	}
	var tlsCfg *tls.Config
	switch s.Security {
	case "tls", "starttls":
		if tlsCfg, err = newTLSConfig(s); err != nil {
			return nil, nil, fail(stageConfig, err)
		}
		if observe != nil {
			// Runs after the normal verification has passed.
			tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
				observe(cs)
				return nil
			}
		}
	case "none":
	default:
		return nil, nil, fail(stageConfig, fmt.Errorf("imap.security %q: want tls, starttls or none", s.Security))
	}

	opts := &imapclient.Options{
		TLSConfig: tlsCfg,
		// Decodes RFC 2047 words in ENVELOPE data in any charset.
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
	}
	if newMail != nil {
		// Runs on the client's reader goroutine: no client calls, no blocking.
		opts.UnilateralDataHandler = &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case newMail <- struct{}{}:
					default:
					}
				}
			},
		}
	}

	d := net.Dialer{Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fail(stageConnect, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, caps, stage, err := setup(ctx, raw, s, cred, opts)
	if !stop() {
		// ctx ended during setup: report that rather than the I/O error
		// the forced close caused.
		if c != nil {
			c.Close()
		}
		if stage == "" {
			stage = stageLogin
		}
		cause := context.Cause(ctx)
		if err != nil {
			cause = fmt.Errorf("%w (%v)", cause, err)
		}
		return nil, nil, fail(stage, cause)
	}
	if err != nil {
		return nil, nil, fail(stage, err)
	}
	return c, caps, nil
}

func setup(ctx context.Context, raw net.Conn, s config.Server, cred credentials, opts *imapclient.Options) (c *imapclient.Client, caps imap.CapSet, stage string, err error) {
	switch s.Security {
	case "tls":
		cfg := opts.TLSConfig.Clone()
		cfg.NextProtos = []string{"imap"}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, nil, stageTLS, err
		}
		c = imapclient.New(tc, opts)
	case "starttls":
		// Reads the greeting, sends STARTTLS and verifies the certificate;
		// it refuses a PREAUTH greeting on purpose.
		c, err = imapclient.NewStartTLS(raw, opts)
		if err != nil {
			return nil, nil, stageTLS, err
		}
	default:
		c = imapclient.New(raw, opts)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, nil, stageGreeting, err
	}
	if err := authenticate(c, s, cred); err != nil {
		c.Close()
		return nil, nil, stageLogin, err
	}
	// Only now: servers often advertise MOVE and UIDPLUS after login.
	caps = c.Caps()
	if caps == nil {
		c.Close()
		return nil, nil, stageLogin, errors.New("no CAPABILITY answer after login")
	}
	return c, caps, "", nil
}

// ensureFolder creates name unless it already exists.
func ensureFolder(c *imapclient.Client, name string) error {
	err := c.Create(name, nil).Wait()
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		if imapErr.Code == imap.ResponseCodeAlreadyExists {
			return nil
		}
		// Some servers answer NO without a code: see whether it exists.
		if list, lerr := c.List("", name, nil).Collect(); lerr == nil && len(list) > 0 {
			return nil
		}
	}
	return fmt.Errorf("create folder %q: %w", name, err)
}

// moveTo moves the messages of set to dest. With MOVE it is one command.
// Without, it is COPY (checked), STORE +FLAGS.SILENT \Deleted and, with
// UIDPLUS, UID EXPUNGE of those UIDs only; without UIDPLUS they stay flagged
// \Deleted for the server to expunge. Never a plain EXPUNGE (it would purge
// other clients' \Deleted mail), and never Client.Move's own fallback
// (which pipelines the three commands without checking COPY).
func moveTo(c *imapclient.Client, caps imap.CapSet, set imap.UIDSet, dest string) error {
	if caps.Has(imap.CapMove) {
		if _, err := c.Move(set, dest).Wait(); err != nil {
			return fmt.Errorf("move uid %s to %q: %w", set, dest, err)
		}
		return nil
	}
	if _, err := c.Copy(set, dest).Wait(); err != nil {
		return fmt.Errorf("copy uid %s to %q: %w", set, dest, err)
	}
	deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := c.Store(set, deleted, nil).Close(); err != nil {
		return fmt.Errorf("flag uid %s deleted: %w", set, err)
	}
	if caps.Has(imap.CapUIDPlus) {
		if err := c.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("uid expunge %s: %w", set, err)
		}
	}
	return nil
}
