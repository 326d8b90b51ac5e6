package notify

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"
	"unicode"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/store"
)

//go:embed templates/*.tmpl
var templateFiles embed.FS

// Notification kinds, one template set each (KIND.tmpl in English,
// KIND.LANG.tmpl for other languages).
const (
	KindAck              = "ack"               // to the requester: case opened
	KindTeamNew          = "team_new"          // to notify.team: case opened
	KindUrgent           = "urgent"            // to notify.urgent: case is urgent
	KindReopened         = "reopened"          // to the requester: reply reopened the case
	KindTeamReopened     = "team_reopened"     // to notify.team: reply reopened the case
	KindStatus           = "status"            // to the participants: status changed
	KindTeamStatus       = "team_status"       // to notify.team: status changed
	KindReply            = "reply"             // to the participants: an agent's public reply
	KindTeamNote         = "team_note"         // to notify.team: internal note added
	KindTeamAssigned     = "team_assigned"     // to notify.team: assignee set
	KindAssigned         = "assigned"          // to the assignee: case assigned to them
	KindTeamPriority     = "team_priority"     // to notify.team: priority changed
	KindDue              = "due"               // to the assignee, or notify.team: target at risk or missed
	KindAssigneeReply    = "assignee_reply"    // to the assignee: the customer replied
	KindAssigneeReopened = "assignee_reopened" // to the assignee: a reply reopened their case
)

// Kinds lists every notification kind.
var Kinds = []string{KindAck, KindTeamNew, KindUrgent, KindReopened, KindTeamReopened, KindStatus,
	KindTeamStatus, KindReply, KindTeamNote, KindTeamAssigned, KindAssigned, KindTeamPriority, KindDue,
	KindAssigneeReply, KindAssigneeReopened}

// Languages are those every kind ships a template for.
var Languages = []string{"en", "de"}

// customerKinds go to customers: they thread onto the customer's messages
// and say auto-replied rather than auto-generated.
var customerKinds = []string{KindAck, KindReopened, KindStatus, KindReply}

// NotificationHeader marks every mail caseintake sends, so that its own
// mail is recognised if it ever comes back into a support mailbox. It has
// the same value as classify.NotificationHeader.
const NotificationHeader = "X-Caseintake-Notification"

// customerVisible are the statuses a requester is told about.
var customerVisible = []casemodel.Status{casemodel.InProgress, casemodel.CustomerPending,
	casemodel.SolutionProvided, casemodel.Closed, casemodel.Open}

// Renderer turns case changes into outbox rows (NewCase, StatusChanged,
// ...: queued in the change's transaction, subject and Message-ID
// settled) and a row into the message the worker sends (Compose). It
// also holds the response-target policy, because the acknowledgement
// promises a due time: NewCase and RaisedUrgent stamp the case's due time
// under it.
type Renderer struct {
	from    *mail.Address
	domain  string
	envFrom string
	team    []string
	urgent  []string
	lang    string
	tmpl    map[string]map[string]*template.Template     // by language, then kind
	html    map[string]map[string]*htmltemplate.Template // kinds whose file defines "html"
	targets casemodel.Targets
	idKey   []byte // signs our Message-IDs; see msgid.go
}

// NewRenderer prepares the templates and addresses from the config: the
// built-in templates, each replaced by a file of the same name in
// notify.templates_dir when there is one. Its Message-ID key is random until
// SetMessageIDKey.
func NewRenderer(s config.SMTP, n config.Notify) (*Renderer, error) {
	from, err := mail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("smtp.from: %w", err)
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	envFrom := s.EnvelopeSender
	if envFrom == config.NullEnvelopeSender {
		envFrom = ""
	}
	var override fs.FS
	if n.TemplatesDir != "" {
		override = os.DirFS(n.TemplatesDir)
	}
	tmpl := map[string]map[string]*template.Template{}
	html := map[string]map[string]*htmltemplate.Template{}
	for _, lang := range Languages {
		tmpl[lang] = map[string]*template.Template{}
		for _, kind := range Kinds {
			name := kind + ".tmpl"
			if lang != "en" {
				name = kind + "." + lang + ".tmpl"
			}
			src := fs.FS(templateFiles)
			path := "templates/" + name
			if override != nil {
				if _, err := fs.Stat(override, name); err == nil {
					src, path = override, name
				}
			}
			// One template set per kind: each file defines "subject" and "body".
			t, err := template.New(name).Funcs(funcs(lang)).ParseFS(src, path)
			if err != nil {
				return nil, fmt.Errorf("notification template %s: %w (fix the file or remove it from notify.templates_dir)", name, err)
			}
			for _, part := range []string{"subject", "body"} {
				if t.Lookup(part) == nil {
					return nil, fmt.Errorf("notification template %s defines no %q: each file needs {{define \"subject\"}} and {{define \"body\"}}", name, part)
				}
			}
			tmpl[lang][kind] = t
			// An optional "html" block adds an HTML alternative, rendered
			// from the same file and data with html/template's escaping.
			if t.Lookup("html") != nil {
				h, err := htmltemplate.New(name).Funcs(htmltemplate.FuncMap(funcs(lang))).ParseFS(src, path)
				if err != nil {
					return nil, fmt.Errorf("notification template %s (html): %w", name, err)
				}
				if html[lang] == nil {
					html[lang] = map[string]*htmltemplate.Template{}
				}
				html[lang][kind] = h
			}
		}
	}
	lang := primaryLanguage(n.Language)
	if tmpl[lang] == nil {
		lang = "en"
	}
	if from.Name == "" {
		from.Name = "Support"
	}
	return &Renderer{from: from, domain: domain, envFrom: envFrom, lang: lang,
		team: slices.Clone(n.Team), urgent: slices.Clone(n.Urgent), tmpl: tmpl, html: html,
		targets: casemodel.DefaultTargets(), idKey: NewMessageIDKey()}, nil
}

// SetMessageIDKey sets the key that signs our Message-IDs (a fresh random
// one until then, which is right only for a renderer that never outlives its
// store: replies to mail signed with it stop threading once it is gone). The
// daemon uses the key kept in its database. Call it before the renderer is
// shared.
func (r *Renderer) SetMessageIDKey(key []byte) { r.idKey = key }

// SetTargets replaces the response-target policy (DefaultTargets until
// then). Call it before the renderer is shared.
func (r *Renderer) SetTargets(ts casemodel.Targets) { r.targets = ts }

// Targets is the response-target policy in use.
func (r *Renderer) Targets() casemodel.Targets { return r.targets }

// primaryLanguage turns "de-DE, en;q=0.8" into "de".
func primaryLanguage(s string) string {
	s, _, _ = strings.Cut(s, ",")
	s, _, _ = strings.Cut(s, ";")
	s, _, _ = strings.Cut(strings.TrimSpace(s), "-")
	s, _, _ = strings.Cut(s, "_")
	return strings.ToLower(s)
}

// language picks the case's template language: its own when templates
// exist for it, else the configured default.
func (r *Renderer) language(c *casemodel.Case) string {
	if l := primaryLanguage(c.Language); r.tmpl[l] != nil {
		return l
	}
	return r.lang
}

var statusText = map[string]map[casemodel.Status]string{
	"en": {casemodel.Open: "open", casemodel.Triaging: "being triaged", casemodel.InProgress: "in progress",
		casemodel.CustomerPending: "waiting for your reply", casemodel.AwaitingAuthorization: "awaiting authorization",
		casemodel.MeetingScheduled: "meeting scheduled", casemodel.OnHold: "on hold",
		casemodel.SolutionProvided: "solution provided", casemodel.Closed: "closed", casemodel.Archived: "archived"},
	"de": {casemodel.Open: "offen", casemodel.Triaging: "in Prüfung", casemodel.InProgress: "in Bearbeitung",
		casemodel.CustomerPending: "wartet auf Ihre Antwort", casemodel.AwaitingAuthorization: "wartet auf Freigabe",
		casemodel.MeetingScheduled: "Termin vereinbart", casemodel.OnHold: "zurückgestellt",
		casemodel.SolutionProvided: "Lösung bereitgestellt", casemodel.Closed: "geschlossen", casemodel.Archived: "archiviert"},
}

func funcs(lang string) template.FuncMap {
	return template.FuncMap{
		// status names a status in the template's language.
		"status": func(s any) string {
			st := casemodel.Status(fmt.Sprint(s))
			if t, ok := statusText[lang][st]; ok {
				return t
			}
			return string(st)
		},
		// when formats a time for people.
		"when": func(t time.Time) string { return t.Format("Mon, 02 Jan 2006 15:04 MST") },
	}
}

// Data is what a template sees.
type Data struct {
	Case   *casemodel.Case
	Tag    string // "[Case #1042]"
	Team   string // the display name of smtp.from
	Signal string // why: "subject phrase \"Production Down\""
	Text   string // an excerpt of the customer's message, for the team
	From   string // previous status
	To     string // new status
	Actor  string
	Note   string
	Lang   string // the template's language
	Due    string // for due notices: at_risk or missed
}

// Event describes a change to notify about. A queued notification keeps
// it (as Outgoing.Event) to be rendered from when it is sent.
type Event struct {
	Signal string `json:"signal,omitempty"`
	// Text is the customer's message (an excerpt goes to the team) or the
	// agent's reply.
	Text string `json:"text,omitempty"`
	// TextOf is the Message-ID of the case's message whose text Text is:
	// a queued notification then keeps the reference, not a copy, and
	// takes the text from the case when it is sent.
	TextOf string           `json:"text_of,omitempty"`
	From   casemodel.Status `json:"from,omitempty"`
	To     casemodel.Status `json:"to,omitempty"`
	Actor  string           `json:"actor,omitempty"`
	Note   string           `json:"note,omitempty"`
	// ReplyTo is the customer's message the requester's notification
	// answers (threading); empty for agent-driven changes.
	ReplyTo string `json:"reply_to,omitempty"`
	// Due is the kind of a due notice: casemodel.AtRisk or casemodel.Missed.
	Due string `json:"due,omitempty"`
}

// NewCase renders what a new case sends: the acknowledgement (unless ack is
// false: automated sender or rate limit), the team notice and, for an
// urgent case, the escalation notice.
//
// It first sets the case's due time under the renderer's targets.
func (r *Renderer) NewCase(c *casemodel.Case, ev Event, ack bool, now time.Time) ([]*store.Outgoing, error) {
	c.Retarget(r.targets)
	var specs []spec
	if ack {
		specs = append(specs, spec{KindAck, []string{c.Requester}})
	}
	specs = append(specs, spec{KindTeamNew, r.team})
	if c.Priority == casemodel.Urgent {
		specs = append(specs, spec{KindUrgent, r.urgent})
	}
	return r.renderAll(c, ev, now, specs...)
}

// RaisedUrgent renders what a case raised to urgent by mail sends: the
// escalation notice to notify.urgent and the priority change to the team
// (ev.From and ev.To carry the old and new priority). It first recomputes
// the case's due time under the renderer's targets.
func (r *Renderer) RaisedUrgent(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	c.Retarget(r.targets)
	return r.renderAll(c, ev, now, spec{KindUrgent, r.urgent}, spec{KindTeamPriority, r.team})
}

// Reopened renders what a reopening reply sends: a note to the requester,
// to the team and to the assignee.
func (r *Renderer) Reopened(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindReopened, []string{c.Requester}}, spec{KindTeamReopened, r.team},
		spec{KindAssigneeReopened, r.assignee(c)})
}

// CustomerReplied renders what a customer's reply that does not reopen the
// case sends: a note to the assignee (nothing when unassigned).
func (r *Renderer) CustomerReplied(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindAssigneeReply, r.assignee(c)})
}

// StatusChanged renders a status change by an agent or the daemon: to the
// participants when the new status is one customers are told about, and to
// the team.
func (r *Renderer) StatusChanged(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	var specs []spec
	if slices.Contains(customerVisible, ev.To) {
		specs = append(specs, spec{KindStatus, r.customers(c)})
	}
	specs = append(specs, spec{KindTeamStatus, r.team})
	return r.renderAll(c, ev, now, specs...)
}

// Assigned renders an assignee change: to the team and to the new assignee.
func (r *Renderer) Assigned(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindTeamAssigned, r.team}, spec{KindAssigned, r.assignee(c)})
}

// NoteAdded renders an internal note: to the team only.
func (r *Renderer) NoteAdded(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindTeamNote, r.team})
}

// PriorityChanged renders an agent's priority change: to the team, and to
// the escalation lists when raised to urgent.
func (r *Renderer) PriorityChanged(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	specs := []spec{{KindTeamPriority, r.team}}
	if ev.To == casemodel.Status(casemodel.Urgent) {
		specs = append(specs, spec{KindUrgent, r.urgent})
	}
	return r.renderAll(c, ev, now, specs...)
}

// Replied renders an agent's public reply (ev.Text) to the participants,
// threaded onto the customer's latest message. It is human-written mail,
// so unlike notifications it carries no Auto-Submitted header.
func (r *Renderer) Replied(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	if ev.ReplyTo == "" {
		for _, m := range slices.Backward(c.Messages) {
			if m.Direction == casemodel.In && m.MessageID != "" {
				ev.ReplyTo = m.MessageID
				break
			}
		}
	}
	return r.renderAll(c, ev, now, spec{KindReply, r.customers(c)})
}

// DueNotice renders an at-risk or missed first-response notice (ev.Due) to
// the assignee, or to the team when nobody is assigned.
func (r *Renderer) DueNotice(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	to := r.assignee(c)
	if len(to) == 0 {
		to = r.team
	}
	return r.renderAll(c, ev, now, spec{KindDue, to})
}

// customers are the case's participants: the requester and those the
// customer put on Cc.
func (r *Renderer) customers(c *casemodel.Case) []string {
	to := []string{c.Requester}
	for _, p := range c.Participants {
		if !slices.Contains(to, p) {
			to = append(to, p)
		}
	}
	return to
}

func (r *Renderer) assignee(c *casemodel.Case) []string {
	if c.Assignee == "" {
		return nil
	}
	return []string{c.Assignee}
}

// Enqueue adds rows to the outbox in tx. Those to the requester also join
// the case's thread and Message-ID index, so that replies to them thread
// back; the caller writes c.
func (r *Renderer) Enqueue(tx *store.Tx, c *casemodel.Case, rows []*store.Outgoing, now time.Time) error {
	for _, o := range rows {
		if err := tx.Enqueue(o); err != nil {
			return err
		}
		if !slices.Contains(o.To, c.Requester) {
			continue
		}
		c.Messages = append(c.Messages, casemodel.Message{
			MessageID: o.MessageID, Direction: casemodel.Out, From: r.from.Address, To: o.To,
			Kind: o.Kind, Subject: o.Subject, Date: now,
		})
		if err := tx.IndexMessageID(o.MessageID, c.ID); err != nil {
			return err
		}
	}
	return nil
}

// spec is one notification to render: its kind and recipients.
type spec struct {
	kind string
	to   []string
}

// renderAll renders each spec that has recipients (an empty notify list
// sends nothing).
func (r *Renderer) renderAll(c *casemodel.Case, ev Event, now time.Time, specs ...spec) ([]*store.Outgoing, error) {
	var out []*store.Outgoing
	for _, sp := range specs {
		if len(sp.to) == 0 {
			continue
		}
		o, err := r.render(sp.kind, c, sp.to, ev, now)
		if err != nil {
			return nil, fmt.Errorf("render %s notification for case #%d: %w", sp.kind, c.ID, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// render queues one notification: its recipients, Message-ID and
// subject are settled now, its body when it is sent (Compose).
func (r *Renderer) render(kind string, c *casemodel.Case, to []string, ev Event, now time.Time) (*store.Outgoing, error) {
	if ev.TextOf != "" {
		if m := messageText(c, ev.TextOf); m != nil && sameShown(kind, *m, ev.Text) {
			ev.Text = ""
		} else {
			ev.TextOf = "" // not on the case as it is: keep the copy
		}
	}
	if ev.TextOf == "" {
		ev.Text = r.text(kind, ev.Text) // what it shows: the excerpt, not the whole message
	}
	var subject bytes.Buffer
	t, d, err := r.template(kind, c, ev, r.shownText(kind, c, ev))
	if err != nil {
		return nil, err
	}
	if err := t.ExecuteTemplate(&subject, "subject", d); err != nil {
		return nil, err
	}
	queued, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return &store.Outgoing{
		CaseID: c.ID, Kind: kind, EnvelopeFrom: r.envFrom, CreatedAt: now,
		To: slices.Clone(to), Subject: HeaderText(subject.String()),
		MessageID: r.notificationID(c.ID, len(c.Events), kind), Event: queued,
		Urgent: kind == KindUrgent,
	}, nil
}

// text is what a notification of kind shows of text: an excerpt for the
// team, an agent's reply whole.
func (r *Renderer) text(kind, text string) string {
	if kind == KindReply {
		return strings.TrimSpace(text)
	}
	return excerpt(text, excerptLen)
}

// excerptLen bounds the excerpt of a customer's text in a notification.
const excerptLen = 2000

// sameShown reports whether a notification of kind shows the same of
// texts a and b (the case keeps a message's text cut at 8 KB; the excerpt
// is shorter), without building either.
func sameShown(kind, a, b string) bool {
	if kind == KindReply {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	ha, ca := excerptCut(a, excerptLen)
	hb, cb := excerptCut(b, excerptLen)
	return ca == cb && ha == hb
}

// shownText is what a notification of kind shows of a queued event's
// text: that of the case's message it names, or the one it keeps (shown
// as it is).
func (r *Renderer) shownText(kind string, c *casemodel.Case, ev Event) string {
	if ev.TextOf != "" {
		if m := messageText(c, ev.TextOf); m != nil {
			return r.text(kind, *m)
		}
	}
	return ev.Text
}

// messageText is the text of the case's message with Message-ID id.
func messageText(c *casemodel.Case, id string) *string {
	for i := len(c.Messages) - 1; i >= 0; i-- {
		if c.Messages[i].MessageID == id {
			return &c.Messages[i].Text
		}
	}
	return nil
}

// template is the template set for kind in the case's language and the
// data it is executed with (d.Text is left to the caller).
func (r *Renderer) template(kind string, c *casemodel.Case, ev Event, text string) (*template.Template, Data, error) {
	lang := r.language(c)
	d := Data{Case: c, Tag: fmt.Sprintf("[Case #%d]", c.ID), Team: r.from.Name, Signal: ev.Signal,
		Text: text, From: string(ev.From), To: string(ev.To), Actor: ev.Actor, Note: ev.Note,
		Lang: lang, Due: ev.Due}
	t := r.tmpl[lang][kind]
	if t == nil {
		return nil, d, fmt.Errorf("no template %s.tmpl", kind)
	}
	return t, d, nil
}

// Compose renders queued notification o of case c, as c is now, into the
// message to send: its body from the templates, under the subject,
// recipients and Message-ID settled when it was queued. (A row queued
// before schema 6 holds the message rendered then, in o.Data.)
func (r *Renderer) Compose(c *casemodel.Case, o *store.Outgoing) ([]byte, error) {
	var ev Event
	if err := json.Unmarshal(o.Event, &ev); err != nil {
		return nil, fmt.Errorf("notification %s of case #%d: queued event unreadable: %w", o.Kind, o.CaseID, err)
	}
	kind := o.Kind
	t, d, err := r.template(kind, c, ev, r.shownText(kind, c, ev))
	if err != nil {
		return nil, err
	}
	// The body is sized for the excerpt up front (growing it from nothing
	// cost a tenth of rendering a backlog's notifications) and reused:
	// only the composed message is kept.
	body := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if body.Cap() <= maxPooledBody { // an agent's long reply is not kept
			bodyBuffers.Put(body)
		}
	}()
	body.Reset()
	body.Grow(len(d.Text) + 1024)
	if err := t.ExecuteTemplate(body, "body", d); err != nil {
		return nil, fmt.Errorf("render %s notification for case #%d: %w", kind, c.ID, err)
	}
	customer := slices.Contains(customerKinds, kind)
	var refs, inReplyTo []string
	if customer {
		for _, m := range c.Messages {
			if m.Direction == casemodel.In && m.MessageID != "" {
				refs = append(refs, m.MessageID)
			}
		}
		if len(refs) > 10 { // the first message and the latest replies are what clients use
			refs = append(refs[:1], refs[len(refs)-9:]...)
		}
		if ev.ReplyTo != "" {
			inReplyTo = []string{ev.ReplyTo}
		}
	} else {
		// Staff mail about one case threads together in the team's and
		// assignees' clients under a per-case root that is never sent.
		refs = []string{r.ThreadRoot(c.ID)}
	}
	autoSubmitted := "auto-generated"
	if customer {
		autoSubmitted = "auto-replied"
	}
	if kind == KindReply {
		autoSubmitted = "" // written by a person
	}
	var htmlBody bytes.Buffer
	if h := r.html[d.Lang][kind]; h != nil {
		if err := h.ExecuteTemplate(&htmlBody, "html", d); err != nil {
			return nil, fmt.Errorf("render %s notification for case #%d (html): %w", kind, c.ID, err)
		}
	}
	var buf bytes.Buffer
	buf.Grow((body.Len()+htmlBody.Len())*5/4 + 2048) // quoted-printable, the header
	err = compose(&buf, header{
		from: r.from, to: o.To, subject: o.Subject, messageID: o.MessageID,
		inReplyTo: inReplyTo, references: refs, kind: kind, caseID: c.ID, date: o.CreatedAt,
		autoSubmitted: autoSubmitted,
	}, body.Bytes(), htmlBody.Bytes())
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// bodyBuffers recycles the buffers notification bodies are rendered into,
// up to maxPooledBody each.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBody = 64 << 10

type header struct {
	from          *mail.Address
	to            []string
	subject       string
	messageID     string
	inReplyTo     []string
	references    []string
	kind          string
	caseID        uint64
	date          time.Time
	autoSubmitted string
}

// compose writes a text/plain UTF-8 message or, when html is set, a
// multipart/alternative of the text and the HTML.
func compose(w io.Writer, h header, body, html []byte) error {
	var mh gomail.Header
	mh.SetDate(h.date)
	mh.SetAddressList("From", []*gomail.Address{{Name: h.from.Name, Address: h.from.Address}})
	to := make([]*gomail.Address, len(h.to))
	for i, a := range h.to {
		to[i] = &gomail.Address{Address: a}
	}
	mh.SetAddressList("To", to)
	mh.SetSubject(HeaderText(h.subject))
	mh.SetMessageID(h.messageID)
	if len(h.inReplyTo) > 0 {
		mh.SetMsgIDList("In-Reply-To", h.inReplyTo)
	}
	if len(h.references) > 0 {
		mh.SetMsgIDList("References", h.references)
	}
	if h.autoSubmitted != "" {
		mh.Set("Auto-Submitted", h.autoSubmitted) // RFC 3834
		mh.Set("X-Auto-Response-Suppress", "All") // asks Exchange not to send out-of-office replies
	}
	mh.Set(NotificationHeader, h.kind)
	mh.Set("X-Caseintake-Case", fmt.Sprint(h.caseID))
	if len(html) == 0 {
		// What gomail.CreateSingleInlineWriter writes, without its two
		// copies of the header (a tenth of rendering a notification):
		// this header is ours to change.
		mh.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		mh.Set("Content-Transfer-Encoding", "quoted-printable")
		mh.Set("MIME-Version", "1.0")
		if err := textproto.WriteHeader(w, mh.Header.Header); err != nil {
			return err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write(body); err != nil {
			return err
		}
		return qp.Close()
	}
	iw, err := gomail.CreateInlineWriter(w, mh) // multipart/alternative
	if err != nil {
		return err
	}
	for _, part := range []struct {
		ctype string
		text  []byte
	}{{"text/plain", body}, {"text/html", html}} {
		var ph gomail.InlineHeader
		ph.SetContentType(part.ctype, map[string]string{"charset": "utf-8"})
		pw, err := iw.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := pw.Write(part.text); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
	}
	return iw.Close()
}

// HeaderText makes customer-supplied text safe for a header: control
// characters (CR and LF included) become spaces and whitespace collapses.
func HeaderText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// excerpt is s trimmed, cut to at most n bytes with a mark where it was
// cut.
func excerpt(s string, n int) string {
	head, cut := excerptCut(s, n)
	if !cut {
		return head
	}
	return head + "\n[…]"
}

// excerptCut is s trimmed and cut at a character boundary to at most n
// bytes, and whether it was cut.
func excerptCut(s string, n int) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// EnqueueReply queues an agent's public reply (rows from Replied) and
// records it on the case as an outgoing message with its text: the first
// response, which clears the case's due time. The caller writes c.
func (r *Renderer) EnqueueReply(tx *store.Tx, c *casemodel.Case, rows []*store.Outgoing, text, actor string, now time.Time) error {
	for _, o := range rows {
		if err := tx.Enqueue(o); err != nil {
			return err
		}
		if err := tx.IndexMessageID(o.MessageID, c.ID); err != nil {
			return err
		}
		c.RecordReply(casemodel.Message{MessageID: o.MessageID, From: r.from.Address, To: o.To,
			Kind: o.Kind, Subject: o.Subject, Date: now, Text: text}, actor, now)
	}
	return nil
}
