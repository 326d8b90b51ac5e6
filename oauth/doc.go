// Package oauth gets the OAuth 2.0 access tokens that IMAP and SMTP logins
// with auth xoauth2 or oauthbearer present, and builds the SASL clients
// that present them.
//
// A token comes either from a file that an external helper keeps fresh
// (read again for every connection, so a refreshed token is used at the
// next connection), or from caseintake's own client-credentials or
// refresh-token flow (golang.org/x/oauth2) against Microsoft's or Google's
// token endpoint or an explicit token URL; those tokens are kept in memory
// and renewed a minute before they expire.
//
// Invariants: tokens, client secrets and refresh tokens never appear in an
// error's text. Every failure to get a token is an *Error that names the
// config key to look at and says what to do. The package imports only the
// config package's types.
package oauth
