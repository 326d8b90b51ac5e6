package casemodel

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// TestAgentTransitionTable checks every status × every target against the
// table, and that refusals name the current status and the allowed ones.
func TestAgentTransitionTable(t *testing.T) {
	for _, from := range Statuses {
		for _, to := range Statuses {
			err := CheckAgentTransition(from, to)
			allowed := slices.Contains(agentTransitions[from], to)
			if allowed != (err == nil) {
				t.Errorf("%s → %s: allowed=%v err=%v", from, to, allowed, err)
			}
			if err == nil {
				continue
			}
			var te *TransitionError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "from "+string(from)) {
				t.Errorf("%s → %s: error %q should name the current status", from, to, err)
			}
			for _, next := range agentTransitions[from] {
				if !strings.Contains(err.Error(), string(next)) {
					t.Errorf("%s → %s: error %q should list %s", from, to, err, next)
				}
			}
		}
		if slices.Contains(agentTransitions[from], from) {
			t.Errorf("%s → %s listed as a transition", from, from)
		}
	}
	if len(AllowedNext(Archived)) != 0 {
		t.Error("archived must be final")
	}
	if err := CheckAgentTransition(Archived, Open); err == nil || !strings.Contains(err.Error(), "archived is final") {
		t.Errorf("archived → open: %v", err)
	}
}

func TestParse(t *testing.T) {
	if s, err := ParseStatus(" Solution_Provided "); err != nil || s != SolutionProvided {
		t.Errorf("ParseStatus = %q, %v", s, err)
	}
	if _, err := ParseStatus("resolved"); err == nil || !strings.Contains(err.Error(), "customer_pending") {
		t.Errorf("ParseStatus(resolved) = %v", err)
	}
	if p, err := ParsePriority("URGENT"); err != nil || p != Urgent {
		t.Errorf("ParsePriority = %q, %v", p, err)
	}
	if _, err := ParsePriority("critical"); err == nil {
		t.Error("ParsePriority(critical) accepted")
	}
}

func TestReplyEffect(t *testing.T) {
	window := 14 * 24 * time.Hour
	closedAt := func(d time.Duration) *time.Time { at := t0.Add(-d); return &at }
	tests := []struct {
		status   Status
		closedAt *time.Time
		want     ReplyAction
	}{
		{Open, nil, Append},
		{Triaging, nil, Append},
		{InProgress, nil, Append},
		{AwaitingAuthorization, nil, Append},
		{MeetingScheduled, nil, Append},
		{OnHold, nil, Append},
		{CustomerPending, nil, Reopen},
		{SolutionProvided, nil, Reopen},
		{Closed, closedAt(time.Hour), Reopen},
		{Closed, closedAt(window - time.Minute), Reopen},
		{Closed, closedAt(window + time.Minute), OpenLinked},
		{Archived, closedAt(window + time.Hour), OpenLinked},
	}
	for _, tt := range tests {
		c := New(1, "s", "a@example.com", "", "support", Normal, t0.Add(-30*24*time.Hour))
		c.Status, c.ClosedAt = tt.status, tt.closedAt
		if got := ReplyEffect(c, t0, window); got != tt.want {
			t.Errorf("%s closed %v ago: ReplyEffect = %v, want %v", tt.status, tt.closedAt, got, tt.want)
		}
	}
}

func TestRaisePriorityNeverLowers(t *testing.T) {
	c := New(7, "s", "a@example.com", "", "support", High, t0)
	if c.RaisePriority(Normal, "mail", "", t0) || c.Priority != High {
		t.Fatalf("lowered to %s", c.Priority)
	}
	if !c.RaisePriority(Urgent, "mail", "Production Down", t0.Add(time.Minute)) || c.Priority != Urgent {
		t.Fatalf("not raised: %s", c.Priority)
	}
	if want := t0.Add(2 * time.Hour); !c.DueAt.Equal(want) {
		t.Errorf("due = %v, want %v", c.DueAt, want)
	}
	last := c.Events[len(c.Events)-1]
	if last.Kind != "priority" || last.From != "high" || last.To != "urgent" {
		t.Errorf("event = %+v", last)
	}
}

func TestSetStatusTracksClosedAt(t *testing.T) {
	c := New(7, "s", "a@example.com", "", "support", Normal, t0)
	c.SetStatus(Closed, "agent:ann", "done", t0.Add(time.Hour))
	if c.ClosedAt == nil || !c.ClosedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("closed_at = %v", c.ClosedAt)
	}
	if !ShouldArchive(c, t0.Add(15*24*time.Hour), 14*24*time.Hour) {
		t.Error("closed 15 days ago should archive")
	}
	c.SetStatus(Open, "mail", "", t0.Add(2*time.Hour))
	if c.ClosedAt != nil {
		t.Error("reopen must clear closed_at")
	}
}

func TestParticipants(t *testing.T) {
	c := New(7, "s", "a@example.com", "", "support", Normal, t0)
	c.AddParticipants("B@Example.com", "a@example.com", "")
	if !c.IsParticipant("b@example.com") || len(c.Participants) != 2 {
		t.Errorf("participants = %v", c.Participants)
	}
}
