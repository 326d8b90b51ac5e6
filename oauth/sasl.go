package oauth

import (
	"fmt"

	"github.com/emersion/go-sasl"

	"github.com/caseintake/caseintake/config"
)

// XOAuth2 is the name of Google's and Microsoft's XOAUTH2 SASL mechanism.
const XOAuth2 = "XOAUTH2"

// SASLClient returns the SASL client for auth (config.AuthXOAuth2 or
// config.AuthOAuthBearer) that logs username in with token; host and port
// are the server's, which OAUTHBEARER sends along.
func SASLClient(auth, username, token, host string, port int) (sasl.Client, error) {
	switch auth {
	case config.AuthXOAuth2:
		return &xoauth2Client{username: username, token: token}, nil
	case config.AuthOAuthBearer:
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: username, Token: token, Host: host, Port: port}), nil
	}
	return nil, fmt.Errorf("auth %q is not an OAuth method (want xoauth2 or oauthbearer)", auth)
}

// Mechanism is the SASL mechanism name for auth, as servers advertise it
// (AUTH=XOAUTH2, AUTH=OAUTHBEARER).
func Mechanism(auth string) string {
	if auth == config.AuthOAuthBearer {
		return sasl.OAuthBearer
	}
	return XOAuth2
}

// xoauth2Client sends the XOAUTH2 initial response
// "user=U ^A auth=Bearer T ^A ^A". A refusal comes as a challenge holding a
// JSON error, to which the client answers with an empty response; the
// server then fails the command.
type xoauth2Client struct {
	username, token string
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + c.username + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next([]byte) ([]byte, error) {
	return []byte{}, nil
}
