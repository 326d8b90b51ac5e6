package casemodel

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is where a case stands in the support process.
type Status string

// The statuses of design.md, in the order a case usually passes them.
const (
	Open                  Status = "open"
	Triaging              Status = "triaging"
	InProgress            Status = "in_progress"
	CustomerPending       Status = "customer_pending"
	AwaitingAuthorization Status = "awaiting_authorization"
	MeetingScheduled      Status = "meeting_scheduled"
	OnHold                Status = "on_hold"
	SolutionProvided      Status = "solution_provided"
	Closed                Status = "closed"
	Archived              Status = "archived"
)

// Statuses lists every status in process order.
var Statuses = []Status{Open, Triaging, InProgress, CustomerPending, AwaitingAuthorization,
	MeetingScheduled, OnHold, SolutionProvided, Closed, Archived}

// agentTransitions is the one table of status changes an agent may make.
// Mail follows mailTransitions; the daemon's own archiving moves closed to
// archived.
var agentTransitions = map[Status][]Status{
	Open:                  {Triaging, InProgress, CustomerPending, AwaitingAuthorization, MeetingScheduled, OnHold, SolutionProvided, Closed},
	Triaging:              {Open, InProgress, CustomerPending, AwaitingAuthorization, MeetingScheduled, OnHold, SolutionProvided, Closed},
	InProgress:            {Triaging, CustomerPending, AwaitingAuthorization, MeetingScheduled, OnHold, SolutionProvided, Closed},
	CustomerPending:       {Open, InProgress, AwaitingAuthorization, MeetingScheduled, OnHold, SolutionProvided, Closed},
	AwaitingAuthorization: {InProgress, CustomerPending, MeetingScheduled, OnHold, SolutionProvided, Closed},
	MeetingScheduled:      {InProgress, CustomerPending, AwaitingAuthorization, OnHold, SolutionProvided, Closed},
	OnHold:                {Open, InProgress, CustomerPending, SolutionProvided, Closed},
	SolutionProvided:      {Open, InProgress, CustomerPending, Closed},
	Closed:                {Open, Archived},
	Archived:              nil,
}

// mailTransitions are the only status changes a customer's reply causes.
var mailTransitions = map[Status]Status{
	CustomerPending:  Open,
	SolutionProvided: Open,
	Closed:           Open,
}

// ParseStatus accepts a status name as written in the API and CLI.
func ParseStatus(s string) (Status, error) {
	st := Status(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Statuses, st) {
		return st, nil
	}
	return "", fmt.Errorf("unknown status %q: use one of %s", s, joinStatuses(Statuses))
}

// AllowedNext lists the statuses an agent may move a case to from s.
func AllowedNext(s Status) []Status { return slices.Clone(agentTransitions[s]) }

// TransitionError is a refused status change.
type TransitionError struct {
	From, To Status
}

func (e *TransitionError) Error() string {
	next := agentTransitions[e.From]
	if len(next) == 0 {
		return fmt.Sprintf("cannot change status from %s to %s: %s is final", e.From, e.To, e.From)
	}
	return fmt.Sprintf("cannot change status from %s to %s: allowed next are %s", e.From, e.To, joinStatuses(next))
}

// CheckAgentTransition returns a *TransitionError unless an agent may move a
// case from one status to the other.
func CheckAgentTransition(from, to Status) error {
	if slices.Contains(agentTransitions[from], to) {
		return nil
	}
	return &TransitionError{From: from, To: to}
}

func joinStatuses(ss []Status) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Priority is how soon a case needs an answer.
type Priority string

// Priorities from most to least pressing.
const (
	Urgent Priority = "urgent" // production down; also called Critical or S1
	High   Priority = "high"
	Normal Priority = "normal"
	Low    Priority = "low"
)

// Priorities lists every priority, most pressing first.
var Priorities = []Priority{Urgent, High, Normal, Low}

// ParsePriority accepts a priority name as written in the API and CLI.
func ParsePriority(s string) (Priority, error) {
	p := Priority(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Priorities, p) {
		return p, nil
	}
	return "", fmt.Errorf("unknown priority %q: use urgent, high, normal or low", s)
}

// Above reports whether p is more pressing than q.
func (p Priority) Above(q Priority) bool {
	return slices.Index(Priorities, p) < slices.Index(Priorities, q)
}

// Direction says whether a message came from outside or was sent by us.
type Direction string

// Message directions.
const (
	In  Direction = "in"
	Out Direction = "out"
)

// Message is one mail on a case as the API shows it.
type Message struct {
	MessageID string    `json:"message_id"`
	Direction Direction `json:"direction"`
	From      string    `json:"from"`
	To        []string  `json:"to,omitempty"`
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date"`
	Kind      string    `json:"kind,omitempty"`   // for outgoing mail: ack, team_new, ...
	Signal    string    `json:"signal,omitempty"` // for incoming mail: why it was filed here
	Mailbox   string    `json:"mailbox,omitempty"`
	UID       uint32    `json:"uid,omitempty"`
	RawRef    string    `json:"raw_ref,omitempty"` // the exact bytes received: their SHA-256, and where the raw store keeps them
	Text      string    `json:"text,omitempty"`
}

// Event is one change to a case, kept forever.
type Event struct {
	At    time.Time `json:"at"`
	Actor string    `json:"actor"` // "mail", "system" or "agent:NAME"
	Kind  string    `json:"kind"`  // created, status, priority, reply, reopened, linked, notification_failed, ...
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Note  string    `json:"note,omitempty"`
}

// Case is a support case.
type Case struct {
	ID            uint64     `json:"id"`
	Subject       string     `json:"subject"`
	Requester     string     `json:"requester"`
	RequesterName string     `json:"requester_name,omitempty"`
	Participants  []string   `json:"participants"`
	Mailbox       string     `json:"mailbox"`
	Status        Status     `json:"status"`
	Priority      Priority   `json:"priority"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	DueAt         *time.Time `json:"due_at"`
	ClosedAt      *time.Time `json:"closed_at,omitempty"`
	Assignee      string     `json:"assignee"` // the agent's email address; "" when unassigned
	// FirstResponseAt is when an agent first replied; from then on the
	// case has no first-response target (DueAt is nil).
	FirstResponseAt *time.Time `json:"first_response_at,omitempty"`
	// DueNotices records the at-risk and missed notices sent, one per
	// kind and target, so that none is ever sent twice.
	DueNotices []DueNotice `json:"due_notices,omitempty"`
	Language   string      `json:"language,omitempty"`
	Links      []uint64    `json:"links,omitempty"` // related cases (a reply to an archived case opens a linked one)
	Messages   []Message   `json:"messages"`
	Events     []Event     `json:"events"`
}

// Tag is how the case is named in subjects: "#1042".
func (c *Case) Tag() string { return fmt.Sprintf("#%d", c.ID) }

// New opens a case from a first message at now.
func New(id uint64, subject, requester, requesterName, mailbox string, prio Priority, now time.Time) *Case {
	c := &Case{
		ID: id, Subject: subject, Requester: requester, RequesterName: requesterName,
		Participants: []string{requester}, Mailbox: mailbox,
		Status: Open, Priority: prio, CreatedAt: now, UpdatedAt: now,
	}
	c.Retarget(DefaultTargets())
	c.AddEvent(Event{At: now, Actor: "mail", Kind: "created", To: string(Open), Note: "priority " + string(prio)})
	return c
}

// Retarget sets DueAt from the case's priority and opening time under ts,
// unless an agent has already answered. Callers use it when the case is
// opened and whenever its priority changes.
func (c *Case) Retarget(ts Targets) {
	if c.FirstResponseAt != nil {
		c.DueAt = nil
		return
	}
	due := ts.Due(c.Priority, c.CreatedAt)
	c.DueAt = &due
}

// AddEvent appends e and moves UpdatedAt.
func (c *Case) AddEvent(e Event) {
	c.Events = append(c.Events, e)
	if e.At.After(c.UpdatedAt) {
		c.UpdatedAt = e.At
	}
}

// IsParticipant reports whether addr (lowercased addr-spec) may write to
// the case: the requester and anyone on the opening message's Cc.
func (c *Case) IsParticipant(addr string) bool {
	return slices.Contains(c.Participants, strings.ToLower(addr))
}

// AddParticipants adds addresses, lowercased, without duplicates.
func (c *Case) AddParticipants(addrs ...string) {
	for _, a := range addrs {
		a = strings.ToLower(strings.TrimSpace(a))
		if a != "" && !slices.Contains(c.Participants, a) {
			c.Participants = append(c.Participants, a)
		}
	}
}

// SetStatus records a status change by actor. It does not check the
// transition table: callers do (CheckAgentTransition, ReplyEffect).
func (c *Case) SetStatus(to Status, actor, note string, now time.Time) {
	from := c.Status
	c.Status = to
	switch to {
	case Closed:
		c.ClosedAt = &now
	case Archived:
	default:
		c.ClosedAt = nil
	}
	c.AddEvent(Event{At: now, Actor: actor, Kind: "status", From: string(from), To: string(to), Note: note})
}

// RaisePriority moves the case to p when p is more pressing; mail may only
// raise. It reports whether anything changed.
func (c *Case) RaisePriority(p Priority, actor, note string, now time.Time) bool {
	if !p.Above(c.Priority) {
		return false
	}
	from := c.Priority
	c.Priority = p
	c.Retarget(DefaultTargets())
	c.AddEvent(Event{At: now, Actor: actor, Kind: "priority", From: string(from), To: string(p), Note: note})
	return true
}

// ReplyAction is what a customer's reply does to the case it threads to.
type ReplyAction int

// Reply actions.
const (
	// Append files the reply without changing the status.
	Append ReplyAction = iota
	// Reopen files the reply and sets the case back to open.
	Reopen
	// OpenLinked leaves the case alone and opens a new case linked to it:
	// the case is archived (or closed longer than the reopen window).
	OpenLinked
)

// ReplyEffect decides what a reply from a participant received at now does
// to c. A case closed for longer than window counts as archived.
func ReplyEffect(c *Case, now time.Time, window time.Duration) ReplyAction {
	if c.Status == Archived || (c.Status == Closed && c.ClosedAt != nil && now.Sub(*c.ClosedAt) > window) {
		return OpenLinked
	}
	if _, ok := mailTransitions[c.Status]; ok {
		return Reopen
	}
	return Append
}

// ShouldArchive reports whether a closed case has been closed longer than
// the reopen window.
func ShouldArchive(c *Case, now time.Time, window time.Duration) bool {
	return c.Status == Closed && c.ClosedAt != nil && now.Sub(*c.ClosedAt) > window
}
