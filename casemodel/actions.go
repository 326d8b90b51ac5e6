package casemodel

import (
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// Action is something an agent does to a case besides changing its status.
type Action string

// Agent actions.
const (
	ActAssign      Action = "assign"
	ActNote        Action = "note"
	ActReply       Action = "reply"
	ActSetPriority Action = "set-priority"
)

// Actions lists every agent action.
var Actions = []Action{ActAssign, ActNote, ActReply, ActSetPriority}

// refusedActions is the one table of actions a status does not allow (all
// others are allowed). Archived cases are read-only history; a closed case
// has no response target, so its priority cannot change until reopened.
var refusedActions = map[Status][]Action{
	Closed:   {ActSetPriority},
	Archived: {ActAssign, ActNote, ActReply, ActSetPriority},
}

// ActionError is a refused agent action.
type ActionError struct {
	Status Status
	Action Action
}

// Error says what was refused and what to do instead.
func (e *ActionError) Error() string {
	if e.Status == Archived {
		return fmt.Sprintf("cannot %s case: it is archived, and archived cases are read-only (a customer reply opens a new linked case)", e.Action)
	}
	return fmt.Sprintf("cannot %s case: it is %s; change its status first (allowed next are %s)", e.Action, e.Status, joinStatuses(agentTransitions[e.Status]))
}

// CheckAgentAction returns an *ActionError unless an agent may do a to a
// case in status s.
func CheckAgentAction(s Status, a Action) error {
	if slices.Contains(refusedActions[s], a) {
		return &ActionError{Status: s, Action: a}
	}
	return nil
}

// ParseAgent checks an agent identity: agents are named by their email
// address (notifications for them go there). It returns the lowercased
// addr-spec.
func ParseAgent(s string) (string, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(s))
	if err != nil || strings.ContainsAny(a.Address, " \t\r\n") || !strings.Contains(a.Address, "@") {
		return "", fmt.Errorf("agent must be an email address such as ann@example.com, got %q", s)
	}
	return strings.ToLower(a.Address), nil
}

// Assign makes agent ("" to unassign) the case's assignee. It reports
// whether anything changed.
func (c *Case) Assign(agent, actor string, now time.Time) bool {
	if c.Assignee == agent {
		return false
	}
	from := c.Assignee
	c.Assignee = agent
	c.AddEvent(Event{At: now, Actor: actor, Kind: "assigned", From: from, To: agent})
	return true
}

// SetPriority is an agent's priority change: it may raise or lower, and the
// response target is recomputed under ts. It reports whether anything
// changed.
func (c *Case) SetPriority(p Priority, ts Targets, actor, note string, now time.Time) bool {
	if c.Priority == p {
		return false
	}
	from := c.Priority
	c.Priority = p
	c.Retarget(ts)
	c.AddEvent(Event{At: now, Actor: actor, Kind: "priority", From: string(from), To: string(p), Note: note})
	return true
}

// AddNote records an internal note (never mailed to the customer).
func (c *Case) AddNote(actor, text string, now time.Time) {
	c.AddEvent(Event{At: now, Actor: actor, Kind: "note", Note: text})
}

// RecordReply records an agent's public reply m (already queued for
// mailing): the first one is the first response and clears the target.
func (c *Case) RecordReply(m Message, actor string, now time.Time) {
	m.Direction = Out
	c.Messages = append(c.Messages, m)
	if c.FirstResponseAt == nil {
		c.FirstResponseAt = &now
	}
	c.DueAt = nil
	c.AddEvent(Event{At: now, Actor: actor, Kind: "reply", Note: excerptLine(m.Text, 200)})
}

func excerptLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// Due notice kinds.
const (
	AtRisk = "at_risk" // the target is about to be missed
	Missed = "missed"  // the target has passed without a first response
)

// notWaitingForUs are the statuses in which the next step is the
// customer's (or nobody's): no due notices then.
var notWaitingForUs = []Status{CustomerPending, SolutionProvided, Closed, Archived}

// DueNotice is one at-risk or missed notice sent for a target.
type DueNotice struct {
	Kind string    `json:"kind"`
	Due  time.Time `json:"due"`
	At   time.Time `json:"at"`
}

// DueNoticeNeeded says which notice, if any, a case needs at now with the
// at-risk lead: "missed" once the target has passed, "at_risk" within lead
// of it, each at most once per target (a recomputed target may be noticed
// again). A case that missed before anyone noticed it at risk gets only the
// missed notice. Cases not waiting for us (customer_pending,
// solution_provided, closed, archived) get none.
func DueNoticeNeeded(c *Case, now time.Time, lead time.Duration) (string, bool) {
	if c.DueAt == nil || slices.Contains(notWaitingForUs, c.Status) {
		return "", false
	}
	due := *c.DueAt
	sent := func(kind string) bool {
		return slices.ContainsFunc(c.DueNotices, func(n DueNotice) bool { return n.Kind == kind && n.Due.Equal(due) })
	}
	switch {
	case !now.Before(due):
		return Missed, !sent(Missed)
	case !now.Before(due.Add(-lead)):
		return AtRisk, !sent(AtRisk)
	}
	return "", false
}

// NoteDue records that a due notice of kind was sent for the current target.
func (c *Case) NoteDue(kind string, now time.Time) {
	if c.DueAt == nil {
		return
	}
	c.DueNotices = append(c.DueNotices, DueNotice{Kind: kind, Due: *c.DueAt, At: now})
	c.AddEvent(Event{At: now, Actor: "system", Kind: "due_" + kind, Note: "first-response target " + c.DueAt.UTC().Format(time.RFC3339)})
}

// SolutionSince is when the case last entered solution_provided, or the
// latest customer message after that, whichever is later; zero when the
// case is not in solution_provided.
func SolutionSince(c *Case) time.Time {
	if c.Status != SolutionProvided {
		return time.Time{}
	}
	var since time.Time
	for _, e := range c.Events {
		if e.Kind == "status" && e.To == string(SolutionProvided) && e.At.After(since) {
			since = e.At
		}
	}
	if since.IsZero() {
		since = c.UpdatedAt
	}
	for _, m := range c.Messages {
		if m.Direction == In && m.Date.After(since) {
			since = m.Date
		}
	}
	return since
}

// ShouldAutoClose reports whether a case in solution_provided has had no
// customer reply for the quiet period.
func ShouldAutoClose(c *Case, now time.Time, quiet time.Duration) bool {
	since := SolutionSince(c)
	return !since.IsZero() && quiet > 0 && now.Sub(since) >= quiet
}
