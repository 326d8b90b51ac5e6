package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes every environment override: smtp.port is
// CASEINTAKE_SMTP_PORT.
const EnvPrefix = "CASEINTAKE"

// Defaults that are not obvious from the key names.
const (
	DefaultDataDir        = "/var/lib/caseintake"
	DefaultAPIListen      = "127.0.0.1:8025"
	DefaultPollInterval   = 30 * time.Second
	DefaultMaxMessageSize = 100 << 20
	DefaultReopenWindow   = 14 * 24 * time.Hour
	DefaultAutoCloseAfter = 7 * 24 * time.Hour
	DefaultAtRiskLead     = 30 * time.Minute
	DefaultLifecycleTick  = time.Minute
	DefaultLanguage       = "en"
	NullEnvelopeSender    = "<>"
	// Acknowledgement caps per hour and the Received-header loop limit.
	DefaultAckLimitPerRecipient = 10
	DefaultAckLimitGlobal       = 300
	DefaultMaxReceived          = 40
)

// Error is a configuration problem: every Problem names the key it is about.
// Load returns it for anything the operator has to fix in the file or the
// environment, so that callers can exit with the "bad config" status.
type Error struct {
	File     string
	Problems []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("config %s: %s", e.File, strings.Join(e.Problems, "; "))
}

// Load reads the YAML file at path, applies CASEINTAKE_* environment
// overrides and defaults, rejects unknown keys, resolves *_file secrets and
// validates the result. Every problem found is reported, each naming its key.
func Load(path string) (*Config, error) {
	v := viper.NewWithOptions(
		viper.ExperimentalBindStruct(), // env overrides for keys absent from the file
		viper.EnvKeyReplacer(strings.NewReplacer(".", "_")),
	)
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.AutomaticEnv()
	v.SetDefault("data_dir", DefaultDataDir)
	v.SetDefault("api.listen", DefaultAPIListen)
	v.SetDefault("smtp.security", "starttls")
	v.SetDefault("smtp.envelope_sender", NullEnvelopeSender)
	v.SetDefault("smtp.auth", AuthPlain)
	v.SetDefault("intake.reopen_window", DefaultReopenWindow.String())
	v.SetDefault("intake.ack_limit_per_recipient", DefaultAckLimitPerRecipient)
	v.SetDefault("intake.ack_limit_global", DefaultAckLimitGlobal)
	v.SetDefault("intake.max_received", DefaultMaxReceived)
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "auto")
	if err := v.ReadInConfig(); err != nil {
		var notFound *os.PathError
		if errors.As(err, &notFound) {
			return nil, &Error{File: path, Problems: []string{fmt.Sprintf("cannot read the file: %v", notFound.Err)}}
		}
		return nil, &Error{File: path, Problems: []string{"not valid YAML: " + strings.TrimPrefix(err.Error(), "While parsing config: ")}}
	}
	var c Config
	err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationNeedsUnit,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, &Error{File: path, Problems: decodeProblems(err)}
	}
	c.applyListDefaults(v)
	problems := c.resolveSecrets()
	problems = append(problems, c.Validate()...)
	if len(problems) > 0 {
		return nil, &Error{File: path, Problems: problems}
	}
	return &c, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// durationNeedsUnit refuses bare numbers for durations: mapstructure would
// read "poll_interval: 30" as 30 nanoseconds.
func durationNeedsUnit(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("a duration needs a unit (for example 30s, 5m, 336h), got the bare number %v", data)
	}
	return data, nil
}

var (
	decodeKeyRE     = regexp.MustCompile(`^'([^']*)' (.*)$`)
	unknownKeysRE   = regexp.MustCompile(`^'([^']*)' has invalid keys: (.*)$`)
	topUnknownKeyRE = regexp.MustCompile(`^'' has invalid keys: (.*)$`)
)

// decodeProblems turns mapstructure's errors into "key: problem" lines.
func decodeProblems(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" || strings.HasPrefix(line, "decoding failed due to the following error") {
			continue
		}
		if m := topUnknownKeyRE.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[1], ", ") {
				out = append(out, fmt.Sprintf("%s: unknown key (check the spelling against the documented keys)", k))
			}
			continue
		}
		if m := unknownKeysRE.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[2], ", ") {
				out = append(out, fmt.Sprintf("%s.%s: unknown key (check the spelling against the documented keys)", m[1], k))
			}
			continue
		}
		if m := decodeKeyRE.FindStringSubmatch(line); m != nil {
			msg := m[2]
			if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "error decoding") && i > 0 {
				msg = msg[i+2:]
			}
			out = append(out, fmt.Sprintf("%s: %s", m[1], msg))
			continue
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		out = []string{err.Error()}
	}
	return out
}

// applyListDefaults fills defaults inside the mailboxes list, which viper's
// SetDefault and environment overrides cannot reach.
func (c *Config) applyListDefaults(v *viper.Viper) {
	raw, _ := v.Get("mailboxes").([]any)
	for i := range c.Mailboxes {
		m := &c.Mailboxes[i]
		m.ApplyDefaults()
		// idle defaults to true: only an explicit "idle: false" turns it off.
		m.Idle = true
		if i < len(raw) {
			if entry, ok := raw[i].(map[string]any); ok {
				if b, ok := entry["idle"].(bool); ok {
					m.Idle = b
				}
			}
		}
	}
	if c.SMTP.Port == 0 {
		switch c.SMTP.Security {
		case "tls":
			c.SMTP.Port = 465
		default:
			c.SMTP.Port = 587
		}
	}
	if c.Intake.ReopenWindow == 0 {
		c.Intake.ReopenWindow = DefaultReopenWindow
	}
	if c.Intake.AckLimitPerRecipient == 0 {
		c.Intake.AckLimitPerRecipient = DefaultAckLimitPerRecipient
	}
	if c.Intake.AckLimitGlobal == 0 {
		c.Intake.AckLimitGlobal = DefaultAckLimitGlobal
	}
	if c.Intake.MaxReceived == 0 {
		c.Intake.MaxReceived = DefaultMaxReceived
	}
	c.Lifecycle.ApplyDefaults()
	if c.Notify.Language == "" {
		c.Notify.Language = DefaultLanguage
	}
}

// ApplyDefaults fills the lifecycle keys left empty: auto-close after 7
// days, warn 30 minutes ahead, run every minute, Monday to Friday 09:00 to
// 17:00 UTC, and design.md's response targets.
func (l *Lifecycle) ApplyDefaults() {
	if l.Interval == 0 {
		l.Interval = DefaultLifecycleTick
	}
	if l.AutoCloseAfter == 0 {
		l.AutoCloseAfter = DefaultAutoCloseAfter
	}
	if l.AtRiskLead == 0 {
		l.AtRiskLead = DefaultAtRiskLead
	}
	b := &l.BusinessHours
	if b.TimeZone == "" {
		b.TimeZone = "UTC"
	}
	if len(b.Days) == 0 {
		b.Days = []string{"mon", "tue", "wed", "thu", "fri"}
	}
	if b.Start == "" {
		b.Start = "09:00"
	}
	if b.End == "" {
		b.End = "17:00"
	}
	t := &l.ResponseTargets
	for _, f := range []struct {
		p   *string
		def string
	}{{&t.Urgent, "2h"}, {&t.High, "1bd"}, {&t.Normal, "2bd"}, {&t.Low, "5bd"}} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
}

// Weekdays maps the day names of business_hours.days.
var Weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ClockOffset parses "HH:MM" (00:00 to 24:00) as an offset from midnight.
func ClockOffset(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("must be a time of day such as 09:00, got %q", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

var languageRE = regexp.MustCompile(`^[a-z]{2,3}$`)

var targetRE = regexp.MustCompile(`^\s*[1-9][0-9]*bd\s*$`)

func validTarget(s string) bool {
	if targetRE.MatchString(s) {
		return true
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	return err == nil && d > 0
}

func (c *Config) validateLifecycle() []string {
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("lifecycle.%s: "+format, append([]any{key}, args...)...))
	}
	l := c.Lifecycle
	l.ApplyDefaults() // a hand-built Config means the defaults
	if l.Interval < time.Second {
		bad("interval", "must be at least 1s, got %v", l.Interval)
	}
	if l.AutoCloseAfter < 0 {
		bad("auto_close_after", "must not be negative, got %v", l.AutoCloseAfter)
	}
	if l.AtRiskLead < 0 {
		bad("at_risk_lead", "must not be negative, got %v", l.AtRiskLead)
	}
	b := l.BusinessHours
	if _, err := time.LoadLocation(b.TimeZone); err != nil {
		bad("business_hours.time_zone", "unknown time zone %q: use an IANA name such as Europe/Berlin or UTC", b.TimeZone)
	}
	seen := map[string]bool{}
	for i, d := range b.Days {
		d = strings.ToLower(strings.TrimSpace(d))
		if _, ok := Weekdays[d]; !ok {
			bad(fmt.Sprintf("business_hours.days[%d]", i), "must be one of mon, tue, wed, thu, fri, sat, sun, got %q", d)
		} else if seen[d] {
			bad(fmt.Sprintf("business_hours.days[%d]", i), "%s is listed twice", d)
		}
		seen[d] = true
	}
	start, err1 := ClockOffset(b.Start)
	if err1 != nil {
		bad("business_hours.start", "%v", err1)
	}
	end, err2 := ClockOffset(b.End)
	if err2 != nil {
		bad("business_hours.end", "%v", err2)
	}
	if err1 == nil && err2 == nil && end <= start {
		bad("business_hours.end", "must be after start (%s), got %s", b.Start, b.End)
	}
	t := l.ResponseTargets
	for _, f := range []struct{ key, v string }{{"urgent", t.Urgent}, {"high", t.High}, {"normal", t.Normal}, {"low", t.Low}} {
		if !validTarget(f.v) {
			bad("response_targets."+f.key, "must be a duration around the clock such as 2h, or business days such as 1bd, got %q", f.v)
		}
	}
	return problems
}

// ApplyDefaults fills the keys of a mailbox entry that were left empty.
// Load does this for every mailbox; code that builds a Mailbox by hand
// calls it too.
func (m *Mailbox) ApplyDefaults() {
	if m.Folder == "" {
		m.Folder = "INBOX"
	}
	if m.ProcessedFolder == "" {
		m.ProcessedFolder = "Processed"
	}
	if m.QuarantineFolder == "" {
		m.QuarantineFolder = "Quarantine"
	}
	if m.PollInterval <= 0 {
		m.PollInterval = DefaultPollInterval
	}
	if m.MaxMessageSize == 0 {
		m.MaxMessageSize = DefaultMaxMessageSize
	}
	if m.IMAP.Security == "" {
		m.IMAP.Security = "tls"
	}
	if m.IMAP.Port == 0 {
		m.IMAP.Port = 993
		if m.IMAP.Security != "tls" {
			m.IMAP.Port = 143
		}
	}
	if m.IMAP.Username == "" {
		m.IMAP.Username = m.Address
	}
	if m.IMAP.Auth == "" {
		m.IMAP.Auth = AuthPlain
	}
}

// resolveSecrets reads every *_file secret. The values are never logged.
func (c *Config) resolveSecrets() []string {
	var problems []string
	read := func(key, file string, dst *string) {
		if file == "" {
			return
		}
		if *dst != "" {
			problems = append(problems, fmt.Sprintf("%s: set either %s or %s_file, not both", key, key, key))
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s_file: cannot read the secret file: %v", key, err))
			return
		}
		*dst = strings.TrimRight(string(b), "\r\n")
		if *dst == "" {
			problems = append(problems, fmt.Sprintf("%s_file: %s is empty", key, file))
		}
	}
	server := func(key string, s *Server) {
		read(key+".password", s.PasswordFile, &s.Password)
		read(key+".oauth.client_secret", s.OAuth.ClientSecretFile, &s.OAuth.ClientSecret)
		read(key+".oauth.refresh_token", s.OAuth.RefreshTokenFile, &s.OAuth.RefreshToken)
	}
	for i := range c.Mailboxes {
		server(fmt.Sprintf("mailboxes[%d].imap", i), &c.Mailboxes[i].IMAP)
	}
	server("smtp", &c.SMTP.Server)
	read("api.token", c.API.TokenFile, &c.API.Token)
	return problems
}

// Validate returns one line per problem, each naming its key and saying
// what is wrong. It expects defaults and secrets to be applied (Load does).
func (c *Config) Validate() []string {
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: "+format, append([]any{key}, args...)...))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "required: the directory for the database and raw messages")
	}
	if len(c.Mailboxes) == 0 {
		bad("mailboxes", "at least one mailbox is required")
	}
	names := map[string]bool{}
	addresses := map[string]bool{}
	for i, m := range c.Mailboxes {
		k := fmt.Sprintf("mailboxes[%d]", i)
		switch {
		case m.Name == "":
			bad(k+".name", "required")
		case names[m.Name]:
			bad(k+".name", "%q is used by another mailbox; names must be unique", m.Name)
		case strings.ContainsAny(m.Name, "\x00/ "):
			bad(k+".name", "%q may not contain spaces, slashes or NUL", m.Name)
		}
		names[m.Name] = true
		if !validAddress(m.Address) {
			bad(k+".address", "must be an email address such as support@example.com, got %q", m.Address)
		} else if addresses[strings.ToLower(m.Address)] {
			bad(k+".address", "%q is used by another mailbox", m.Address)
		}
		addresses[strings.ToLower(m.Address)] = true
		problems = append(problems, validateServer(k+".imap", m.IMAP)...)
		if m.Folder == m.ProcessedFolder || m.Folder == m.QuarantineFolder || m.ProcessedFolder == m.QuarantineFolder {
			bad(k, "folder, processed_folder and quarantine_folder must be three different folders (got %q, %q, %q)", m.Folder, m.ProcessedFolder, m.QuarantineFolder)
		}
		if m.PollInterval < time.Second {
			bad(k+".poll_interval", "must be at least 1s, got %v", m.PollInterval)
		}
		if m.MaxMessageSize < 0 {
			bad(k+".max_message_size", "must be a positive number of bytes, got %d", m.MaxMessageSize)
		}
	}
	problems = append(problems, validateServer("smtp", c.SMTP.Server)...)
	if _, err := mail.ParseAddress(c.SMTP.From); err != nil {
		bad("smtp.from", "must be an address such as \"Example Support <support@example.com>\", got %q", c.SMTP.From)
	}
	if s := c.SMTP.EnvelopeSender; s != NullEnvelopeSender && !validAddress(s) {
		bad("smtp.envelope_sender", "must be \"<>\" (null sender, the default) or an address, got %q", s)
	}
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"notify.team", c.Notify.Team}, {"notify.urgent", c.Notify.Urgent}} {
		for i, a := range list.addrs {
			if !validAddress(a) {
				bad(fmt.Sprintf("%s[%d]", list.key, i), "must be an email address, got %q", a)
			}
		}
	}
	problems = append(problems, validateListen(c.API.Listen)...)
	if c.API.Token == "" {
		bad("api.token_file", "required: the bearer token agents and the CLI use (generate one with: head -c 32 /dev/urandom | base64)")
	} else if len(c.API.Token) < 16 {
		bad("api.token", "too short: use at least 16 characters")
	}
	if c.Intake.ReopenWindow < 0 {
		bad("intake.reopen_window", "must not be negative, got %v", c.Intake.ReopenWindow)
	}
	for key, v := range map[string]int{
		"intake.ack_limit_per_recipient": c.Intake.AckLimitPerRecipient,
		"intake.ack_limit_global":        c.Intake.AckLimitGlobal,
		"intake.max_received":            c.Intake.MaxReceived,
	} {
		if v < 1 {
			bad(key, "must be at least 1, got %d", v)
		}
	}
	for i, p := range c.Intake.UrgentPhrases {
		if strings.TrimSpace(p) == "" {
			bad(fmt.Sprintf("intake.urgent_phrases[%d]", i), "empty phrase")
		}
	}
	problems = append(problems, c.validateLifecycle()...)
	if lang := c.Notify.Language; lang != "" && !languageRE.MatchString(lang) {
		bad("notify.language", "must be a language code such as en or de, got %q", lang)
	}
	if dir := c.Notify.TemplatesDir; dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			bad("notify.templates_dir", "%q is not a readable directory: create it or remove the key to use the built-in templates", dir)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		bad("log.format", "must be auto, json or text, got %q", c.Log.Format)
	}
	return problems
}

func validateServer(key string, s Server) []string {
	var problems []string
	if strings.TrimSpace(s.Host) == "" {
		problems = append(problems, key+".host: required")
	}
	if s.Port < 1 || s.Port > 65535 {
		problems = append(problems, fmt.Sprintf("%s.port: must be between 1 and 65535, got %d", key, s.Port))
	}
	switch s.Security {
	case "tls", "starttls", "none":
	default:
		problems = append(problems, fmt.Sprintf("%s.security: must be tls, starttls or none, got %q", key, s.Security))
	}
	problems = append(problems, validateAuth(key, s)...)
	if s.CAFile != "" {
		if _, err := os.Stat(s.CAFile); err != nil {
			problems = append(problems, fmt.Sprintf("%s.ca_file: %v", key, err))
		}
	}
	return problems
}

// validateAuth checks the login keys of one server: a password for auth
// plain, one token source for xoauth2 and oauthbearer.
func validateAuth(key string, s Server) []string {
	var problems []string
	bad := func(k, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s.%s: "+format, append([]any{key, k}, args...)...))
	}
	imap := strings.HasPrefix(key, "mailboxes")
	switch s.Auth {
	case "", AuthPlain:
		if !s.OAuth.isZero() {
			bad("oauth", "set, but %s.auth is plain: set %s.auth to xoauth2 or oauthbearer, or remove %s.oauth", key, key, key)
		}
		if imap && s.Username == "" {
			bad("username", "required")
		}
		if imap && s.Password == "" && s.PasswordFile == "" {
			bad("password_file", "required (or password)")
		} else if !imap && s.Username != "" && s.Password == "" && s.PasswordFile == "" {
			bad("password_file", "required when username is set (or password)")
		}
		return problems
	case AuthXOAuth2, AuthOAuthBearer:
	default:
		bad("auth", "must be plain, xoauth2 or oauthbearer, got %q", s.Auth)
		return problems
	}
	if s.Username == "" {
		bad("username", "required with auth %s: the account the token is for", s.Auth)
	}
	if s.Password != "" || s.PasswordFile != "" {
		bad("password_file", "not used with auth %s (the login uses an OAuth token): remove %s.password and %s.password_file", s.Auth, key, key)
	}
	o := s.OAuth
	if o.TokenFile != "" {
		if o.BuiltIn() || o.Provider != "" || o.TokenURL != "" || o.RefreshFlow() || o.ClientSecret != "" || o.ClientSecretFile != "" {
			bad("oauth.token_file", "set either token_file (a token helper keeps it fresh) or client_id with provider or token_url (caseintake fetches the token), not both")
		}
		return problems
	}
	if !o.BuiltIn() {
		bad("oauth", "auth %s needs a token: set %s.oauth.token_file (written by a token helper) or %s.oauth.client_id with provider or token_url (the built-in flow)", s.Auth, key, key)
		return problems
	}
	switch o.Provider {
	case ProviderMicrosoft:
		if o.Tenant == "" && o.TokenURL == "" {
			bad("oauth.tenant", "required with provider microsoft: the directory (tenant) ID or a domain such as contoso.onmicrosoft.com, from the app registration in Entra ID")
		}
	case ProviderGoogle:
		if !o.RefreshFlow() {
			bad("oauth.refresh_token_file", "required with provider google: Gmail accepts no client-credentials tokens; get a refresh token through a consent flow, or use token_file with a helper (e.g. for a service account)")
		}
	case "":
		if o.TokenURL == "" {
			bad("oauth.provider", "set provider (microsoft or google) or token_url, so caseintake knows where to get tokens")
		}
	default:
		bad("oauth.provider", "must be microsoft or google (or leave it empty and set token_url), got %q", o.Provider)
	}
	if o.Tenant != "" && o.Provider != ProviderMicrosoft {
		bad("oauth.tenant", "only used with provider microsoft")
	}
	if o.TokenURL != "" {
		if u, err := url.Parse(o.TokenURL); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname())) {
			bad("oauth.token_url", "must be an https:// URL (http only to localhost), got %q", o.TokenURL)
		}
	}
	if o.ClientSecret == "" && o.ClientSecretFile == "" {
		switch {
		case !o.RefreshFlow():
			bad("oauth.client_secret_file", "required (or client_secret) for the client-credentials flow; or set refresh_token_file for the refresh-token flow")
		case o.Provider == ProviderGoogle:
			bad("oauth.client_secret_file", "required (or client_secret): Google's token endpoint wants the client secret with a refresh token")
		}
	}
	for i, sc := range o.Scopes {
		if strings.TrimSpace(sc) == "" {
			bad(fmt.Sprintf("oauth.scopes[%d]", i), "empty scope")
		}
	}
	return problems
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateListen(listen string) []string {
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		if path == "" {
			return []string{"api.listen: unix: needs a socket path, e.g. unix:/run/caseintake/api.sock"}
		}
		return nil
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return []string{fmt.Sprintf("api.listen: must be host:port or unix:/path, got %q", listen)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return []string{fmt.Sprintf("api.listen: bad port in %q", listen)}
	}
	return nil
}

func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && strings.Contains(a.Address, "@")
}

// Addr is host:port.
func (s Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }
