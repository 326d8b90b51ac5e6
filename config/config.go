package config

import (
	"time"
)

// Config is the whole of caseintake.yaml after defaults, environment
// overrides and *_file secrets have been applied.
type Config struct {
	DataDir   string    `mapstructure:"data_dir"`
	Mailboxes []Mailbox `mapstructure:"mailboxes"`
	SMTP      SMTP      `mapstructure:"smtp"`
	Notify    Notify    `mapstructure:"notify"`
	API       API       `mapstructure:"api"`
	Intake    Intake    `mapstructure:"intake"`
	Lifecycle Lifecycle `mapstructure:"lifecycle"`
	Log       Log       `mapstructure:"log"`
}

// Server is how to reach and log in to an IMAP or SMTP server.
type Server struct {
	Host         string `mapstructure:"host"`
	Port         int    `mapstructure:"port"`
	Security     string `mapstructure:"security"` // tls | starttls | none
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	CAFile       string `mapstructure:"ca_file"` // extra CA to trust (self-signed servers)
	// Auth is how to log in: plain (username and password, the default),
	// xoauth2 or oauthbearer (username and an OAuth 2.0 access token from
	// OAuth).
	Auth  string `mapstructure:"auth"`
	OAuth OAuth  `mapstructure:"oauth"`
}

// Login methods for Server.Auth.
const (
	AuthPlain       = "plain"
	AuthXOAuth2     = "xoauth2"
	AuthOAuthBearer = "oauthbearer"
)

// OAuth providers with built-in token endpoints and scopes.
const (
	ProviderMicrosoft = "microsoft"
	ProviderGoogle    = "google"
)

// OAuth says where a login with auth xoauth2 or oauthbearer gets its access
// token: either from TokenFile, which an external helper keeps fresh, or
// from caseintake's own client-credentials or refresh-token flow against
// the token endpoint of Provider (or TokenURL).
type OAuth struct {
	// TokenFile holds the current access token (the bare token, or JSON
	// with access_token and expiry); it is read again for every connection.
	TokenFile string `mapstructure:"token_file"`
	// Provider presets the token endpoint and default scopes: microsoft
	// (needs Tenant) or google. Leave it empty and set TokenURL for any
	// other provider.
	Provider string `mapstructure:"provider"`
	Tenant   string `mapstructure:"tenant"` // microsoft: directory (tenant) ID or domain
	TokenURL string `mapstructure:"token_url"`
	ClientID string `mapstructure:"client_id"`
	// ClientSecret (or ClientSecretFile) authenticates the client to the
	// token endpoint.
	ClientSecret     string `mapstructure:"client_secret"`
	ClientSecretFile string `mapstructure:"client_secret_file"`
	// RefreshToken (or RefreshTokenFile), when set, selects the
	// refresh-token flow (a user's delegated consent); without it the
	// client-credentials flow (the application's own permission) is used.
	RefreshToken     string `mapstructure:"refresh_token"`
	RefreshTokenFile string `mapstructure:"refresh_token_file"`
	// Scopes replaces the provider's default scopes.
	Scopes []string `mapstructure:"scopes"`
}

// IsOAuth reports whether the server logs in with an OAuth 2.0 token.
func (s Server) IsOAuth() bool { return s.Auth == AuthXOAuth2 || s.Auth == AuthOAuthBearer }

// BuiltIn reports whether caseintake fetches the token itself (client_id
// set) rather than reading a helper's token_file.
func (o OAuth) BuiltIn() bool { return o.ClientID != "" }

// RefreshFlow reports whether the built-in flow redeems a refresh token
// (otherwise it uses client credentials).
func (o OAuth) RefreshFlow() bool { return o.RefreshToken != "" || o.RefreshTokenFile != "" }

func (o OAuth) isZero() bool {
	return o.TokenFile == "" && o.Provider == "" && o.Tenant == "" && o.TokenURL == "" && o.ClientID == "" &&
		o.ClientSecret == "" && o.ClientSecretFile == "" && o.RefreshToken == "" && o.RefreshTokenFile == "" && len(o.Scopes) == 0
}

// Mailbox is one support mailbox read over IMAP.
type Mailbox struct {
	Name             string        `mapstructure:"name"`    // used in logs, metrics and case records
	Address          string        `mapstructure:"address"` // the support address customers write to
	IMAP             Server        `mapstructure:"imap"`
	Folder           string        `mapstructure:"folder"`
	ProcessedFolder  string        `mapstructure:"processed_folder"`
	QuarantineFolder string        `mapstructure:"quarantine_folder"`
	Idle             bool          `mapstructure:"idle"`
	PollInterval     time.Duration `mapstructure:"poll_interval"`
	// MaxMessageSize is the largest message (RFC822.SIZE, bytes) that is
	// downloaded; larger ones are quarantined on the server untouched.
	MaxMessageSize int64 `mapstructure:"max_message_size"`
}

// SMTP is the submission server notifications leave through.
type SMTP struct {
	Server `mapstructure:",squash"`
	// From is the header From of every notification, e.g.
	// "Example Support <support@example.com>".
	From string `mapstructure:"from"`
	// EnvelopeSender is MAIL FROM. "<>" (the default) sends the null
	// reverse path RFC 3834 recommends for automatic mail; set the
	// account address where the submission server insists on it.
	EnvelopeSender string `mapstructure:"envelope_sender"`
}

// Notify lists who hears about case changes besides the requester.
type Notify struct {
	Team   []string `mapstructure:"team"`   // every new case and case change
	Urgent []string `mapstructure:"urgent"` // additionally, for urgent cases
	// Language is the template language for cases whose first message
	// named none (Content-Language) or one without templates: en or de
	// ship with caseintake.
	Language string `mapstructure:"language"`
	// TemplatesDir, when set, is a directory of KIND.LANG.tmpl files that
	// replace the built-in templates of the same name.
	TemplatesDir string `mapstructure:"templates_dir"`
}

// API is the agents' HTTP API, which the CLI talks to.
type API struct {
	Listen    string `mapstructure:"listen"` // host:port or unix:/path
	Token     string `mapstructure:"token"`
	TokenFile string `mapstructure:"token_file"`
}

// Intake tunes how mail becomes cases.
type Intake struct {
	// ReopenWindow is how long after closing a reply still reopens a case;
	// later replies open a new, linked case.
	ReopenWindow time.Duration `mapstructure:"reopen_window"`
	// UrgentPhrases replaces the built-in list of subject phrases that mark
	// a case urgent ("Production Down", "Produktionsausfall", …).
	UrgentPhrases []string `mapstructure:"urgent_phrases"`
	// AckLimitPerRecipient is the most acknowledgements one address gets
	// per hour (stops a loop with an auto-responder that marks nothing).
	AckLimitPerRecipient int `mapstructure:"ack_limit_per_recipient"`
	// AckLimitGlobal is the most acknowledgements sent per hour in all
	// (stops a loop through many addresses).
	AckLimitGlobal int `mapstructure:"ack_limit_global"`
	// MaxReceived quarantines a message with more Received header fields
	// as a mail loop.
	MaxReceived int `mapstructure:"max_received"`
}

// Lifecycle tunes the daemon's scheduled case jobs and response targets.
// Zero values mean the defaults (Load fills them in).
type Lifecycle struct {
	// Interval is how often the scheduled jobs (archive, auto-close, due
	// notices) run.
	Interval time.Duration `mapstructure:"interval"`
	// AutoCloseAfter closes a solution_provided case after this long
	// without a customer reply.
	AutoCloseAfter time.Duration `mapstructure:"auto_close_after"`
	// AtRiskLead is how long before a first-response target the assignee
	// (or the team) is warned.
	AtRiskLead time.Duration `mapstructure:"at_risk_lead"`
	// BusinessHours is the calendar business-day targets count on.
	BusinessHours BusinessHours `mapstructure:"business_hours"`
	// ResponseTargets are the first-response targets per priority: a
	// duration around the clock ("2h") or business days ("1bd").
	ResponseTargets ResponseTargets `mapstructure:"response_targets"`
}

// BusinessHours is the support team's working week in one time zone.
type BusinessHours struct {
	TimeZone string   `mapstructure:"time_zone"` // IANA name such as Europe/Berlin
	Days     []string `mapstructure:"days"`      // mon … sun
	Start    string   `mapstructure:"start"`     // HH:MM
	End      string   `mapstructure:"end"`       // HH:MM, after start (24:00 allowed)
}

// ResponseTargets holds one first-response target per priority.
type ResponseTargets struct {
	Urgent string `mapstructure:"urgent"`
	High   string `mapstructure:"high"`
	Normal string `mapstructure:"normal"`
	Low    string `mapstructure:"low"`
}

// Log configures the daemon's structured logs.
type Log struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // auto | json | text
}
