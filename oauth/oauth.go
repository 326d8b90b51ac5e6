package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/caseintake/caseintake/config"
)

// Service is the protocol a token is for; it picks default scopes and the
// config key in error messages ("imap.oauth", "smtp.oauth").
type Service string

// The services caseintake logs in to.
const (
	IMAP Service = "imap"
	SMTP Service = "smtp"
)

// Key is the config key of the service's oauth block, as error messages
// name it.
func (s Service) Key() string { return string(s) + ".oauth" }

// expiryMargin renews a cached token this long before it expires, so that
// a login never starts with a token about to lapse.
const expiryMargin = time.Minute

// httpTimeout bounds one request to the token endpoint.
const httpTimeout = 30 * time.Second

// TokenURL is the token endpoint for cfg: token_url when set, else the
// provider's.
func TokenURL(cfg config.OAuth) string {
	switch {
	case cfg.TokenURL != "":
		return cfg.TokenURL
	case cfg.Provider == config.ProviderMicrosoft:
		return "https://login.microsoftonline.com/" + url.PathEscape(cfg.Tenant) + "/oauth2/v2.0/token"
	case cfg.Provider == config.ProviderGoogle:
		return "https://oauth2.googleapis.com/token"
	}
	return ""
}

// Scopes are the scopes requested for svc: cfg.Scopes when set, else the
// provider's defaults. Microsoft's client-credentials flow asks for the
// application permissions granted to the app (.default); its refresh-token
// flow for the delegated IMAP or SMTP permission; Google has one scope for
// full mail access.
func Scopes(cfg config.OAuth, svc Service) []string {
	if len(cfg.Scopes) > 0 {
		return cfg.Scopes
	}
	switch cfg.Provider {
	case config.ProviderMicrosoft:
		if !cfg.RefreshFlow() {
			return []string{"https://outlook.office365.com/.default"}
		}
		if svc == SMTP {
			return []string{"https://outlook.office.com/SMTP.Send", "offline_access"}
		}
		return []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
	case config.ProviderGoogle:
		return []string{"https://mail.google.com/"}
	}
	return nil
}

// Source gives the access token for the next login.
type Source interface {
	// Token returns a token that is valid now, fetching or reading it as
	// needed; ctx bounds the work.
	Token(ctx context.Context) (string, error)
	// Describe says where tokens come from, for check output and errors
	// (no secrets).
	Describe() string
	// Refused tells the source that a server refused token, so that it
	// is not handed out again.
	Refused(token string)
}

// NewSource returns the token source that cfg describes, for svc.
func NewSource(cfg config.OAuth, svc Service) (Source, error) {
	if cfg.TokenFile != "" {
		return &fileSource{path: cfg.TokenFile, key: svc.Key()}, nil
	}
	if !cfg.BuiltIn() {
		return nil, &Error{Key: svc.Key(), Msg: "no token source: set token_file or client_id with provider or token_url"}
	}
	tokenURL := TokenURL(cfg)
	if tokenURL == "" {
		return nil, &Error{Key: svc.Key(), Msg: "no token endpoint: set provider (microsoft or google) or token_url"}
	}
	return &flowSource{cfg: cfg, svc: svc, tokenURL: tokenURL, refresh: cfg.RefreshToken}, nil
}

var (
	sharedMu sync.Mutex
	shared   = map[string]Source{}
)

// Shared is NewSource, but returns the same Source for the same
// configuration and service, so that connections and reconnects made with
// one configuration share one cached token instead of fetching a new one
// each time.
func Shared(cfg config.OAuth, svc Service) (Source, error) {
	key := fmt.Sprintf("%s\x00%q", svc, cfg)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s, ok := shared[key]; ok {
		return s, nil
	}
	s, err := NewSource(cfg, svc)
	if err != nil {
		return nil, err
	}
	shared[key] = s
	return s, nil
}

// fileSource reads a token an external helper writes.
type fileSource struct {
	path string
	key  string
}

func (f *fileSource) Describe() string { return "token file " + f.path }

// Refused does nothing: the file is read again for every login anyway.
func (f *fileSource) Refused(string) {}

// fileToken is the JSON form of a token file (what golang.org/x/oauth2
// and many helpers write).
type fileToken struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

func (f *fileSource) Token(context.Context) (string, error) {
	fail := func(err error, format string, args ...any) error {
		return &Error{Key: f.key, Msg: fmt.Sprintf(format, args...), Err: err}
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fail(err, "cannot read token_file %s (%v): is the token helper running, and may caseintake read its output?", f.path, errors.Unwrap(err))
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return "", fail(nil, "token_file %s is empty: is the token helper running?", f.path)
	}
	if !strings.HasPrefix(text, "{") {
		return text, nil
	}
	var t fileToken
	if err := json.Unmarshal([]byte(text), &t); err != nil || t.AccessToken == "" {
		return "", fail(err, "token_file %s is JSON without an access_token: write the bare token or {\"access_token\": …, \"expiry\": …}", f.path)
	}
	if !t.Expiry.IsZero() && !time.Now().Before(t.Expiry) {
		return "", fail(nil, "the token in token_file %s expired at %s: is the token helper running and refreshing it?", f.path, t.Expiry.UTC().Format(time.RFC3339))
	}
	return t.AccessToken, nil
}

// flowSource runs the built-in client-credentials or refresh-token flow
// and caches the token until shortly before it expires.
type flowSource struct {
	cfg      config.OAuth
	svc      Service
	tokenURL string

	mu      sync.Mutex
	token   *oauth2.Token
	refresh string // the latest refresh token (providers may rotate it)
}

func (f *flowSource) Describe() string {
	flow := "client credentials"
	if f.cfg.RefreshFlow() {
		flow = "refresh token"
	}
	return fmt.Sprintf("%s for client %s at %s", flow, f.cfg.ClientID, f.tokenURL)
}

// Refused drops token from the cache: the next login fetches a new one.
func (f *flowSource) Refused(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != nil && f.token.AccessToken == token {
		f.token = nil
	}
}

func (f *flowSource) Token(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != nil && (f.token.Expiry.IsZero() || time.Now().Add(expiryMargin).Before(f.token.Expiry)) {
		return f.token.AccessToken, nil
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: httpTimeout})
	c := &clientcredentials.Config{ClientID: f.cfg.ClientID, ClientSecret: f.cfg.ClientSecret,
		TokenURL: f.tokenURL, Scopes: Scopes(f.cfg, f.svc), AuthStyle: oauth2.AuthStyleInParams}
	if f.cfg.RefreshFlow() {
		// The same request with the refresh-token grant, so that the
		// scopes go along (Microsoft wants them; oauth2.Config's refresh
		// leaves them out).
		c.EndpointParams = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {f.refresh}}
	}
	t, err := c.Token(ctx)
	if err != nil {
		return "", f.explain(err)
	}
	if t.RefreshToken != "" {
		f.refresh = t.RefreshToken
	}
	f.token = t
	return t.AccessToken, nil
}

// explain turns a failed token request into one plain line.
func (f *flowSource) explain(err error) error {
	key := f.svc.Key()
	e := &Error{Key: key, Err: err}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var ue *url.Error
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			e.Msg = fmt.Sprintf("token endpoint %s did not answer in time: check outbound HTTPS to it (proxy, firewall)", f.tokenURL)
		case errors.As(err, &ue):
			e.Msg = fmt.Sprintf("cannot reach the token endpoint %s (%v): check %s.provider/tenant or token_url, and outbound HTTPS", f.tokenURL, ue.Err, key)
		default:
			e.Msg = fmt.Sprintf("token endpoint %s gave no usable token (%v): check %s.token_url", f.tokenURL, err, key)
		}
		return e
	}
	said := re.ErrorCode
	if d := firstLine(re.ErrorDescription); d != "" {
		said += ": " + d
	}
	if said == "" && re.Response != nil {
		said = "HTTP " + re.Response.Status
	}
	switch re.ErrorCode {
	case "invalid_client", "unauthorized_client":
		e.Msg = fmt.Sprintf("token endpoint refused the client credentials (%s): check %s.client_id/client_secret, and that the secret has not expired", said, key)
	case "invalid_grant":
		if f.cfg.RefreshFlow() {
			e.Msg = fmt.Sprintf("token endpoint refused the refresh token (%s): it has expired or was revoked; get a new one by consenting again and put it in %s.refresh_token_file", said, key)
		} else {
			e.Msg = fmt.Sprintf("token endpoint refused the grant (%s): check %s.client_id/client_secret and the app's permissions", said, key)
		}
	case "invalid_scope":
		e.Msg = fmt.Sprintf("token endpoint refused the scopes %s (%s): check %s.scopes and the permissions granted to the app", strings.Join(Scopes(f.cfg, f.svc), " "), said, key)
	case "invalid_request":
		e.Msg = fmt.Sprintf("token endpoint refused the request (%s): check %s.tenant/token_url and client_id", said, key)
	default:
		if re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			e.Msg = fmt.Sprintf("token endpoint %s does not exist (HTTP 404): check %s.provider/tenant or token_url", f.tokenURL, key)
		} else {
			e.Msg = fmt.Sprintf("token endpoint %s refused (%s): check the %s keys", f.tokenURL, said, key)
		}
	}
	return e
}

// firstLine keeps the first line of a provider's error description
// (Microsoft appends trace and correlation IDs on further lines).
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s, _, _ = strings.Cut(s, " Trace ID:")
	return strings.TrimSpace(s)
}

// Error is a failure to get a token. Its text is one line: the config key
// to look at, what failed and what to do. It never contains a secret.
type Error struct {
	Key string // e.g. "imap.oauth"
	Msg string
	Err error
}

// Error returns "KEY: MSG".
func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
