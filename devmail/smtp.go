package devmail

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"
)

var errSMTPDown = &smtp.SMTPError{
	Code:         421,
	EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message:      "Service not available, closing transmission channel",
}

func (s *Server) serveSMTP(ln net.Listener) {
	srv := smtp.NewServer(smtpBackend{s})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = logAdapter{s.log, "smtp"}
	var l net.Listener = &gateListener{Listener: ln, down: s.isSMTPDown, silent: s.opts.ImplicitTLS}
	if s.opts.ImplicitTLS {
		l = tls.NewListener(l, s.opts.TLSConfig)
	} else {
		srv.TLSConfig = s.opts.TLSConfig
	}
	s.smtpSrv = srv
	go srv.Serve(l)
}

// gateListener answers 421 and hangs up on connections while the server is
// "down", so that clients see an outage without the port changing.
type gateListener struct {
	net.Listener
	down   func() bool
	silent bool // implicit TLS: a plaintext 421 would only confuse the client
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.down() {
			return c, nil
		}
		if !l.silent {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "421 4.3.2 localhost Service not available, try again later\r\n")
		}
		c.Close()
	}
}

type smtpBackend struct{ s *Server }

func (b smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	b.s.smtpConn = append(b.s.smtpConn, c)
	b.s.mu.Unlock()
	return &smtpSession{s: b.s}, nil
}

// SMTPConnections is how many SMTP connections the server has accepted.
func (s *Server) SMTPConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.smtpConn)
}

// DropSMTPConnections closes every open SMTP connection without a word,
// as a server does with clients idle too long.
func (s *Server) DropSMTPConnections() {
	s.mu.Lock()
	conns := slices.Clone(s.smtpConn)
	s.mu.Unlock()
	for _, c := range conns {
		c.Conn().Close()
	}
}

type smtpSession struct {
	s    *Server
	from string
	to   []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// checkPassword is AUTH PLAIN's check against the users' passwords.
func (ss *smtpSession) checkPassword(identity, username, password string) error {
	if identity != "" && identity != username {
		return smtp.ErrAuthFailed
	}
	a, err := ss.s.account(username)
	if err != nil || subtle.ConstantTimeCompare([]byte(a.password), []byte(password)) != 1 {
		return smtp.ErrAuthFailed
	}
	return nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.isSMTPDown() {
		return errSMTPDown
	}
	ss.from = from
	ss.to = nil
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.isSMTPDown() {
		return errSMTPDown
	}
	ss.s.mu.Lock()
	err := ss.s.rcptErr[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 0, 0}, Message: err.Error()}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r) // must be consumed before Data returns
	if err != nil {
		return err
	}
	if ss.s.isSMTPDown() {
		return errSMTPDown
	}
	env := Envelope{From: ss.from, To: append([]string(nil), ss.to...), Data: data, At: time.Now()}
	ss.s.deliverLocal(env)
	ss.s.record(env)
	return nil
}

func (ss *smtpSession) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *smtpSession) Logout() error { return nil }

// deliverLocal appends the message to the INBOX of every recipient that is
// an IMAP user, once per user.
func (s *Server) deliverLocal(env Envelope) {
	done := make(map[*account]bool)
	for _, rcpt := range env.To {
		s.mu.Lock()
		a := s.accounts[strings.ToLower(rcpt)]
		s.mu.Unlock()
		if a == nil || done[a] {
			continue
		}
		done[a] = true
		if _, err := a.user.Append("INBOX", bytes.NewReader(env.Data), &imap.AppendOptions{Time: env.At}); err != nil {
			s.log.Warn("devmail: cannot deliver to INBOX", "rcpt", rcpt, "err", err)
		}
	}
}
