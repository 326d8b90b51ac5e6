package intake

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/store"
)

// quotedMessageID finds a Message-ID field quoted in the text of a bounce
// that carries no structured report (many MTAs paste the returned header
// into the text).
var quotedMessageID = regexp.MustCompile(`(?im)^[ \t>]*Message-ID:[ \t]*<([^<>\s]{1,250})>`)

// bounce handles a delivery failure report about one of our own
// notifications: it is attached to that notification's case, the failed
// recipients are marked undeliverable on the notification and in the
// case's events, and nothing is sent (no new case, no acknowledgement, no
// reopen). It reports false when the report is not about a notification of
// ours, so the caller ignores it as automated mail.
func (p *Pipeline) bounce(tx *store.Tx, d *store.Decision, msg *classify.Message, now time.Time) (bool, error) {
	rep := msg.Report
	if rep == nil {
		rep = &classify.DeliveryReport{}
	}
	var candidates []string
	if rep.OriginalMessageID != "" {
		candidates = append(candidates, rep.OriginalMessageID)
	}
	for _, m := range quotedMessageID.FindAllStringSubmatch(msg.Text, 5) {
		candidates = append(candidates, m[1])
	}
	var o *store.Outgoing
	for _, id := range candidates {
		caseID, ours := p.render.CaseOfMessageID(id)
		if !ours {
			continue
		}
		var err error
		if o, err = tx.OutgoingOfCase(caseID, id); err != nil {
			return false, err
		} else if o != nil {
			break
		}
	}
	if o == nil {
		return false, nil
	}
	rcpts := slices.Clone(rep.Failed)
	if len(rcpts) == 0 {
		// No per-recipient status: a notification to a single recipient
		// can only have failed for that one.
		all := append(slices.Clone(o.Delivered), o.To...)
		slices.Sort(all)
		all = slices.Compact(all)
		if len(all) == 1 {
			rcpts = all
		}
	}
	c, err := tx.Case(o.CaseID)
	if err != nil {
		return false, err
	}
	status := strings.TrimSpace(strings.Join([]string{rep.Status, rep.Diagnostic}, " "))
	if status == "" {
		status = "no status given"
	}
	who := strings.Join(rcpts, ", ")
	if who == "" {
		who = "recipient not named"
	}
	signal := fmt.Sprintf("delivery failure report about our %s notification <%s> on case #%d: %s undeliverable (%s); attached, nothing sent",
		o.Kind, strings.Trim(o.MessageID, "<>"), c.ID, who, status)
	if len(rcpts) > 0 {
		if err := tx.MarkUndeliverable(o, rcpts, "delivery failure report: "+status); err != nil {
			return false, err
		}
	}
	c.Messages = append(c.Messages, p.incoming(d, msg, signal))
	for _, r := range rcpts {
		c.AddEvent(casemodel.Event{At: now, Actor: "system", Kind: "notification_failed", To: r,
			Note: fmt.Sprintf("%s notification bounced: %s", o.Kind, status)})
	}
	if len(rcpts) == 0 {
		c.AddEvent(casemodel.Event{At: now, Actor: "system", Kind: "notification_failed",
			Note: fmt.Sprintf("%s notification bounced (recipient not named): %s", o.Kind, status)})
	}
	if msg.MessageID != "" {
		if err := tx.IndexMessageID(msg.MessageID, c.ID); err != nil {
			return false, err
		}
	}
	if err := tx.PutCase(c); err != nil {
		return false, err
	}
	d.Outcome, d.Signal, d.CaseID = store.OutcomeAppended, signal, c.ID
	return true, nil
}
