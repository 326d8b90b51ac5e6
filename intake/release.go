package intake

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// salvageHeaderLimit bounds how much of an unparseable message the lenient
// header reader looks at.
const salvageHeaderLimit = 4 << 20

// Release is an agent's decision to open a case from a quarantined message
// by hand.
type Release struct {
	// Actor is who released it, as the case history names agents
	// ("agent:ann@example.com").
	Actor string
	// Requester is the customer the case is for; required when no sender
	// address can be read from the message, and otherwise it replaces the
	// sender (Reply-To, then From).
	Requester string
	// Subject replaces the message's subject as the case subject.
	Subject string
}

// Release opens a case from quarantine record seq by hand: an agent has
// looked at the message (caseintake quarantine show) and judged it a real
// request. It uses what can be salvaged from the stored bytes, even when
// they cannot be parsed, and records a decision that supersedes the
// quarantine and names the agent. The customer is acknowledged as for any
// new case, unless the message is automated mail or was quarantined as a
// loop. It returns an error wrapping store.ErrNotFound (no such record),
// store.ErrNotRetryable (not a quarantine, or decided since) or
// store.ErrNoRequester (no sender found and rel.Requester empty, or
// rel.Requester not an address).
func (p *Pipeline) Release(seq uint64, rel Release) (*store.Decision, error) {
	q, settled, err := p.store.QuarantineRecord(seq)
	if err != nil {
		return nil, err
	}
	if settled != nil {
		return nil, notStanding(q, settled)
	}
	msg, note := p.Salvage(q)
	requester, from, err := p.releaseRequester(q, msg, rel.Requester, note)
	if err != nil {
		return nil, err
	}
	subject := notify.HeaderText(rel.Subject)
	if subject == "" {
		subject = classify.StripReplyPrefixes(msg.Subject)
	}
	if subject == "" {
		subject = "(no subject)"
	}
	signal := fmt.Sprintf("released from quarantine by %s (was %s: %s); requester %s from %s", rel.Actor, q.Outcome, firstLine(q.Signal), requester, from)
	if note != "" {
		signal += "; " + note
	}
	prio := casemodel.Normal
	if phrase, urgent := p.opts.Urgency.Match(subject); urgent {
		prio = casemodel.Urgent
		signal += fmt.Sprintf("; subject phrase %q: urgent", phrase)
	}

	var d store.Decision
	queued := 0
	err = p.store.Update(func(tx *store.Tx) error {
		// Someone may have retried or released it since the check above.
		if q, settled, err = tx.QuarantineRecord(seq); err != nil {
			return err
		} else if settled != nil {
			return notStanding(q, settled)
		}
		now := p.opts.Now()
		withheld, err := p.ackWithheld(tx, q, msg, requester, now)
		if err != nil {
			return err
		}
		sig := signal
		if withheld != "" {
			sig += "; no acknowledgement: " + withheld
		}
		d = *q
		d.Seq, d.Supersedes, d.Outcome, d.Signal, d.DecidedAt = 0, q.Seq, store.OutcomeNewCase, sig, now
		if d.From == "" {
			d.From = msg.From
		}
		if d.Subject == "" {
			d.Subject = msg.Subject
		}
		id, err := tx.NewCaseID()
		if err != nil {
			return err
		}
		c := casemodel.New(id, subject, requester, msg.FromName, q.Mailbox, prio, now)
		c.Language = msg.ContentLanguage
		for _, a := range append([]string{msg.From}, msg.Cc...) {
			if a != "" && !slices.Contains(p.opts.OwnAddresses, a) {
				c.AddParticipants(a)
			}
		}
		c.AddEvent(casemodel.Event{At: now, Actor: rel.Actor, Kind: "released",
			Note: fmt.Sprintf("opened from quarantine record %d (%s)", q.Seq, q.Outcome)})
		c.Messages = append(c.Messages, p.incoming(&d, msg, sig))
		d.CaseID = c.ID
		rows, err := p.render.NewCase(c, notify.Event{Signal: sig, Text: msg.Text, TextOf: msg.MessageID, ReplyTo: msg.MessageID, Actor: rel.Actor}, withheld == "", now)
		if err != nil {
			return err
		}
		if err := p.commitCase(tx, c, msg.MessageID, rows, now); err != nil {
			return err
		}
		queued = len(rows)
		return tx.RecordDecision(&d)
	})
	if err != nil {
		return nil, fmt.Errorf("release of quarantine record %d: %w", seq, err)
	}
	p.log.Info("quarantined message released", "mailbox", d.Mailbox, "uid", d.UID, "message_id", d.MessageID,
		"seq", seq, "actor", rel.Actor, "case", d.CaseID, "signal", d.Signal)
	if queued > 0 {
		p.onCommit()
	}
	return &d, nil
}

// notStanding says that quarantine record q was decided since by settled.
func notStanding(q, settled *store.Decision) error {
	what := settled.Outcome
	if settled.CaseID != 0 {
		what += fmt.Sprintf(" (case #%d)", settled.CaseID)
	}
	return fmt.Errorf("record %d is no longer in quarantine: record %d decided the message as %s; see `caseintake trace %s`: %w",
		q.Seq, settled.Seq, what, traceKey(q), store.ErrNotRetryable)
}

func traceKey(d *store.Decision) string {
	if d.MessageID != "" {
		return d.MessageID
	}
	return d.MessageKey
}

// releaseRequester picks the case's requester: the agent's choice, else
// Reply-To, else From (never our own addresses). from names the source.
func (p *Pipeline) releaseRequester(q *store.Decision, msg *classify.Message, given, note string) (requester, from string, err error) {
	if strings.TrimSpace(given) != "" {
		a, err := mail.ParseAddress(strings.TrimSpace(given))
		if err != nil || !strings.Contains(a.Address, "@") {
			return "", "", fmt.Errorf("requester must be an email address such as alice@customer.example, got %q: %w", given, store.ErrNoRequester)
		}
		return strings.ToLower(a.Address), "--requester", nil
	}
	for _, c := range []struct{ addr, from string }{{msg.ReplyTo, "Reply-To"}, {msg.From, "From"}} {
		if c.addr != "" && !slices.Contains(p.opts.OwnAddresses, c.addr) {
			return c.addr, c.from, nil
		}
	}
	why := "it has no From or Reply-To address but our own"
	if note != "" {
		why = note
	}
	return "", "", fmt.Errorf("quarantine record %d: no sender address can be found in the message (%s): name the customer with --requester EMAIL: %w",
		q.Seq, why, store.ErrNoRequester)
}

// ackWithheld says why the requester of a released message gets no
// acknowledgement ("" when it does): automated mail and loops get none,
// and the per-address and global hourly caps hold as for any new case.
func (p *Pipeline) ackWithheld(tx *store.Tx, q *store.Decision, msg *classify.Message, requester string, now time.Time) (string, error) {
	switch {
	case msg.Automated != "":
		return "automated mail (" + msg.Automated + ")", nil
	case q.Outcome == store.OutcomeQuarantined+":loop":
		return "it was quarantined as a mail loop", nil
	}
	if n := tx.AcksSince(requester, now.Add(-ackWindow)); n >= p.opts.AckLimit {
		return fmt.Sprintf("%d sent to %s in the last hour (limit %d)", n, requester, p.opts.AckLimit), nil
	}
	n, err := tx.AllAcksSince(now.Add(-ackWindow))
	if err != nil {
		return "", err
	}
	if n >= p.opts.GlobalAckLimit {
		return fmt.Sprintf("%d sent in all in the last hour (intake.ack_limit_global %d)", n, p.opts.GlobalAckLimit), nil
	}
	return "", nil
}

// Salvage reads what it can of quarantine record q's message, as Release
// uses it and `quarantine show` shows it. note is "" when the
// stored bytes now parse; otherwise it says what could not be read and
// what the case holds instead: the top-level header when only the body
// failed, the header fields a lenient reader finds when classify could
// not read the header, or the record's own fields when no bytes were
// stored (a message too large to download).
func (p *Pipeline) Salvage(q *store.Decision) (*classify.Message, string) {
	if q.RawRef == "" {
		return &classify.Message{MessageID: q.MessageID, From: q.From, Subject: q.Subject},
			"the message was never downloaded (too large): the case holds no text; the message is in the quarantine folder"
	}
	msg, err := p.parse(q.RawRef)
	if err == nil {
		return msg, ""
	}
	if msg != nil {
		return msg, fmt.Sprintf("its body cannot be read (%s): the case holds what its header gave", firstLine(err.Error()))
	}
	if m := p.lenientHeader(q.RawRef); m != nil {
		return m, fmt.Sprintf("it cannot be parsed (%s): sender and subject read leniently; the exact bytes are in the raw store", firstLine(err.Error()))
	}
	return &classify.Message{}, fmt.Sprintf("nothing could be read from it (%s)", firstLine(err.Error()))
}

// lenientHeader reads the sender, subject, Message-ID and date of a
// message classify refused, with net/mail over at most salvageHeaderLimit
// bytes, and an excerpt of its body; nil when even that fails.
func (p *Pipeline) lenientHeader(ref string) *classify.Message {
	f, err := p.store.OpenRaw(ref)
	if err != nil {
		return nil
	}
	defer f.Close()
	return lenientHeaderOf(f)
}

// lenientHeaderOf is lenientHeader for the message's bytes r.
func lenientHeaderOf(r io.Reader) *classify.Message {
	m, err := mail.ReadMessage(io.LimitReader(r, salvageHeaderLimit))
	if err != nil {
		return nil
	}
	dec := &mime.WordDecoder{}
	text := func(field string) string {
		v := m.Header.Get(field)
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		return strings.ToValidUTF8(notify.HeaderText(v), "\uFFFD")
	}
	addr := func(field string) (string, string) {
		a, err := mail.ParseAddress(m.Header.Get(field))
		if err != nil {
			return "", ""
		}
		return strings.ToLower(a.Address), strings.ToValidUTF8(a.Name, "\uFFFD")
	}
	out := &classify.Message{Subject: text("Subject"), MessageID: strings.Trim(text("Message-Id"), "<>")}
	out.From, out.FromName = addr("From")
	out.ReplyTo, _ = addr("Reply-To")
	if date, err := m.Header.Date(); err == nil {
		out.Date = date
	}
	body, _ := io.ReadAll(io.LimitReader(m.Body, textExcerpt))
	out.Text = strings.ToValidUTF8(string(body), "\uFFFD")
	if out.From == "" && out.ReplyTo == "" && out.Subject == "" && out.MessageID == "" {
		return nil
	}
	return out
}
