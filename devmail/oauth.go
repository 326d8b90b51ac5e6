package devmail

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// OAuth mechanism names, as the servers advertise them.
const (
	mechXOAuth2     = "XOAUTH2"
	mechOAuthBearer = sasl.OAuthBearer
)

// AddToken makes token a valid OAuth 2.0 bearer token for user's IMAP
// (AUTHENTICATE) and SMTP (AUTH) logins with XOAUTH2 and OAUTHBEARER. The
// user must exist.
func (s *Server) AddToken(user, token string) error {
	if _, err := s.account(user); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		s.tokens = make(map[string]string)
	}
	s.tokens[token] = strings.ToLower(user)
	return nil
}

// RevokeToken makes token invalid from now on, as an expired or revoked
// token is: logins presenting it are refused.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// tokenValid reports whether token is valid for user.
func (s *Server) tokenValid(user, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.tokens[token]
	return ok && u == strings.ToLower(user)
}

// tokenRefusal is the JSON a server sends before failing a login with a
// bad token (RFC 7628 §3.2.2; XOAUTH2 uses the same shape).
func tokenRefusal(status string) []byte {
	b, _ := json.Marshal(map[string]string{"status": status, "schemes": "bearer", "scope": "https://mail.example.test/"})
	return b
}

// xoauth2Server checks an XOAUTH2 initial response
// ("user=U ^A auth=Bearer T ^A ^A"). A bad token gets a JSON challenge;
// the client's (empty) answer to it then gets fail.
type xoauth2Server struct {
	valid  func(user, token string) bool
	fail   error
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, x.fail
	}
	if resp == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	var user, token string
	for _, field := range bytes.Split(resp, []byte{1}) {
		k, v, _ := strings.Cut(string(field), "=")
		switch k {
		case "user":
			user = v
		case "auth":
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				token = v[7:]
			}
		}
	}
	if user != "" && token != "" && x.valid(user, token) {
		return nil, true, nil
	}
	x.failed = true
	return tokenRefusal("401"), false, nil
}

// oauthBearerServer checks OAUTHBEARER (RFC 7628); a refusal carries the
// status invalid_token.
func oauthBearerServer(valid func(user, token string) bool) sasl.Server {
	return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		if o.Username != "" && valid(o.Username, o.Token) {
			return nil
		}
		return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
	})
}

// saslSession adds AUTHENTICATE PLAIN, XOAUTH2 and OAUTHBEARER to an IMAP
// session.
type saslSession struct {
	idleSession
	s *Server
}

var _ imapserver.SessionSASL = saslSession{}

func (ss saslSession) AuthenticateMechanisms() []string {
	return []string{sasl.Plain, mechXOAuth2, mechOAuthBearer}
}

var errIMAPTokenRefused = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Invalid credentials (Failure)",
}

func (ss saslSession) Authenticate(mech string) (sasl.Server, error) {
	// A valid token logs the memory backend's session in with the
	// account's password, which only devmail knows.
	valid := func(user, token string) bool {
		if !ss.s.tokenValid(user, token) {
			return false
		}
		a, err := ss.s.account(user)
		return err == nil && ss.Login(a.addr, a.password) == nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return errIMAPTokenRefused
			}
			return ss.Login(username, password)
		}), nil
	case mechXOAuth2:
		return &xoauth2Server{valid: valid, fail: errIMAPTokenRefused}, nil
	case mechOAuthBearer:
		return oauthBearerServer(valid), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
}

// smtpTokenRefused is what Gmail answers to a bad XOAUTH2 token.
var smtpTokenRefused = &smtp.SMTPError{
	Code:         535,
	EnhancedCode: smtp.EnhancedCode{5, 7, 8},
	Message:      "Username and Password not accepted",
}

func (ss *smtpSession) AuthMechanisms() []string {
	return []string{sasl.Plain, mechXOAuth2, mechOAuthBearer}
}

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(ss.checkPassword), nil
	case mechXOAuth2:
		return &xoauth2Server{valid: ss.s.tokenValid, fail: smtpTokenRefused}, nil
	case mechOAuthBearer:
		return oauthBearerServer(ss.s.tokenValid), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// Tokens returns the tokens currently valid for user, in no particular
// order.
func (s *Server) Tokens(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for tok, u := range s.tokens {
		if u == strings.ToLower(user) {
			out = append(out, tok)
		}
	}
	return out
}
