package notify

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"text/template"
	"time"
	"unicode"

	gomail "github.com/emersion/go-message/mail"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/store"
)

//go:embed templates/*.tmpl
var templateFiles embed.FS

// Notification kinds, one template each.
const (
	KindAck          = "ack"           // to the requester: case opened
	KindTeamNew      = "team_new"      // to notify.team: case opened
	KindUrgent       = "urgent"        // to notify.urgent: case is urgent
	KindReopened     = "reopened"      // to the requester: reply reopened the case
	KindTeamReopened = "team_reopened" // to notify.team: reply reopened the case
	KindStatus       = "status"        // to the requester: status changed
	KindTeamStatus   = "team_status"   // to notify.team: status changed
)

// NotificationHeader marks every mail caseintake sends, so that its own
// mail is recognised if it ever comes back into a support mailbox. It has
// the same value as classify.NotificationHeader.
const NotificationHeader = "X-Caseintake-Notification"

// customerVisible are the statuses a requester is told about.
var customerVisible = []casemodel.Status{casemodel.InProgress, casemodel.CustomerPending,
	casemodel.SolutionProvided, casemodel.Closed, casemodel.Open}

// Renderer turns case changes into outbox rows.
type Renderer struct {
	from    *mail.Address
	domain  string
	envFrom string
	team    []string
	urgent  []string
	tmpl    map[string]*template.Template // by kind
}

// NewRenderer prepares the templates and addresses from the config.
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
	tmpl := map[string]*template.Template{}
	for _, kind := range []string{KindAck, KindTeamNew, KindUrgent, KindReopened, KindTeamReopened, KindStatus, KindTeamStatus} {
		// One template set per kind: each file defines "subject" and "body".
		t, err := template.ParseFS(templateFiles, "templates/"+kind+".tmpl")
		if err != nil {
			return nil, fmt.Errorf("notification template %s: %w", kind, err)
		}
		tmpl[kind] = t
	}
	if from.Name == "" {
		from.Name = "Support"
	}
	return &Renderer{from: from, domain: domain, envFrom: envFrom,
		team: slices.Clone(n.Team), urgent: slices.Clone(n.Urgent), tmpl: tmpl}, nil
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
}

// Event describes a change to notify about.
type Event struct {
	Signal string
	Text   string
	From   casemodel.Status
	To     casemodel.Status
	Actor  string
	Note   string
	// ReplyTo is the customer's message the requester's notification
	// answers (threading); empty for agent-driven changes.
	ReplyTo string
}

// NewCase renders what a new case sends: the acknowledgement (unless ack is
// false: automated sender or rate limit), the team notice and, for an
// urgent case, the escalation notice.
func (r *Renderer) NewCase(c *casemodel.Case, ev Event, ack bool, now time.Time) ([]*store.Outgoing, error) {
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

// RaisedUrgent renders the escalation notice for a case raised to urgent.
func (r *Renderer) RaisedUrgent(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindUrgent, r.urgent})
}

// Reopened renders what a reopening reply sends: a note to the requester and
// to the team.
func (r *Renderer) Reopened(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	return r.renderAll(c, ev, now, spec{KindReopened, []string{c.Requester}}, spec{KindTeamReopened, r.team})
}

// StatusChanged renders an agent's status change: to the requester when the
// new status is one customers are told about, and to the team.
func (r *Renderer) StatusChanged(c *casemodel.Case, ev Event, now time.Time) ([]*store.Outgoing, error) {
	var specs []spec
	if slices.Contains(customerVisible, ev.To) {
		specs = append(specs, spec{KindStatus, []string{c.Requester}})
	}
	specs = append(specs, spec{KindTeamStatus, r.team})
	return r.renderAll(c, ev, now, specs...)
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

func (r *Renderer) render(kind string, c *casemodel.Case, to []string, ev Event, now time.Time) (*store.Outgoing, error) {
	d := Data{Case: c, Tag: fmt.Sprintf("[Case #%d]", c.ID), Team: r.from.Name, Signal: ev.Signal,
		Text: excerpt(ev.Text, 2000), From: string(ev.From), To: string(ev.To), Actor: ev.Actor, Note: ev.Note}
	t := r.tmpl[kind]
	if t == nil {
		return nil, fmt.Errorf("no template %s.tmpl", kind)
	}
	var subject, body bytes.Buffer
	if err := t.ExecuteTemplate(&subject, "subject", d); err != nil {
		return nil, err
	}
	if err := t.ExecuteTemplate(&body, "body", d); err != nil {
		return nil, err
	}
	customer := kind == KindAck || kind == KindReopened || kind == KindStatus
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
	}
	autoSubmitted := "auto-generated"
	if customer {
		autoSubmitted = "auto-replied"
	}
	o := &store.Outgoing{
		CaseID: c.ID, Kind: kind, EnvelopeFrom: r.envFrom, CreatedAt: now,
		To: slices.Clone(to), Subject: HeaderText(subject.String()),
		MessageID: fmt.Sprintf("caseintake.%d.%d.%s@%s", c.ID, len(c.Events), kind, r.domain),
	}
	var buf bytes.Buffer
	err := compose(&buf, header{
		from: r.from, to: to, subject: subject.String(), messageID: o.MessageID,
		inReplyTo: inReplyTo, references: refs, kind: kind, caseID: c.ID, date: now,
		autoSubmitted: autoSubmitted,
	}, body.String())
	if err != nil {
		return nil, err
	}
	o.Data = buf.Bytes()
	return o, nil
}

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

// compose writes a single text/plain UTF-8 message.
func compose(w io.Writer, h header, body string) error {
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
	mh.Set("Auto-Submitted", h.autoSubmitted) // RFC 3834
	mh.Set("X-Auto-Response-Suppress", "All") // asks Exchange not to send out-of-office replies
	mh.Set(NotificationHeader, h.kind)
	mh.Set("X-Caseintake-Case", fmt.Sprint(h.caseID))
	mh.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	bw, err := gomail.CreateSingleInlineWriter(w, mh)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(bw, body); err != nil {
		return err
	}
	return bw.Close()
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

func excerpt(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "\n[…]"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
