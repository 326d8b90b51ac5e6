package casemodel

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEveryStatusTimesEveryAction walks every status against every agent
// action and every status change, checking the one table's verdict and
// that refusals say what is allowed instead.
func TestEveryStatusTimesEveryAction(t *testing.T) {
	type verdict struct {
		status Status
		action string
		ok     bool
	}
	var want []verdict
	for _, s := range Statuses {
		for _, a := range Actions {
			ok := s != Archived && (s != Closed || a != ActSetPriority)
			want = append(want, verdict{s, string(a), ok})
		}
		for _, to := range Statuses {
			want = append(want, verdict{s, "set-status " + string(to), slices.Contains(agentTransitions[s], to)})
		}
	}
	for _, v := range want {
		var err error
		if to, ok := strings.CutPrefix(v.action, "set-status "); ok {
			err = CheckAgentTransition(v.status, Status(to))
		} else {
			err = CheckAgentAction(v.status, Action(v.action))
		}
		if (err == nil) != v.ok {
			t.Errorf("%s × %s: allowed=%v, got err=%v", v.status, v.action, v.ok, err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), string(v.status)) {
			t.Errorf("%s × %s: error %q does not name the current status", v.status, v.action, err)
		}
		var ae *ActionError
		if errors.As(err, &ae) && v.status != Archived && !strings.Contains(err.Error(), "allowed next are") {
			t.Errorf("%s × %s: error %q does not list the allowed next statuses", v.status, v.action, err)
		}
	}
	// Mail: only these statuses change on a participant's reply, all to open.
	for _, s := range Statuses {
		c := &Case{Status: s}
		got := ReplyEffect(c, t0, 14*24*time.Hour)
		switch s {
		case CustomerPending, SolutionProvided, Closed:
			if got != Reopen {
				t.Errorf("mail reply to %s = %v, want reopen", s, got)
			}
		case Archived:
			if got != OpenLinked {
				t.Errorf("mail reply to archived = %v, want a linked case", got)
			}
		default:
			if got != Append {
				t.Errorf("mail reply to %s = %v, want append", s, got)
			}
		}
	}
}

func TestAgentActionsRecordEvents(t *testing.T) {
	c := New(7, "s", "a@x.example", "", "support", Normal, t0)
	if !c.Assign("ann@example.com", "agent:ann@example.com", t0) || c.Assign("ann@example.com", "agent:x", t0) {
		t.Fatal("assign should change once")
	}
	due := *c.DueAt
	if !c.SetPriority(Low, DefaultTargets(), "agent:ann", "not pressing", t0) || !c.DueAt.After(due) {
		t.Fatalf("lowering should move the target later: %v → %v", due, c.DueAt)
	}
	c.AddNote("agent:ann", "called them", t0)
	c.RecordReply(Message{MessageID: "r1@x", Text: "try this"}, "agent:ann", t0.Add(time.Hour))
	if c.DueAt != nil || c.FirstResponseAt == nil {
		t.Fatal("first reply must clear the target")
	}
	c.SetPriority(Urgent, DefaultTargets(), "agent:ann", "", t0)
	if c.DueAt != nil {
		t.Fatal("after the first response a priority change sets no new target")
	}
	var kinds []string
	for _, e := range c.Events {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "created,assigned,priority,note,reply,priority" {
		t.Fatalf("events %s", got)
	}
	if _, err := ParseAgent("not an address"); err == nil {
		t.Error("ParseAgent accepted a non-address")
	}
	if a, err := ParseAgent("Ann <Ann@Example.com>"); err != nil || a != "ann@example.com" {
		t.Errorf("ParseAgent = %q, %v", a, err)
	}
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s: %v", name, err)
	}
	return loc
}

func TestDueAcrossWeekendsZonesAndDST(t *testing.T) {
	utc := DefaultTargets()
	berlin := DefaultTargets()
	berlin.Calendar.Location = mustLoc(t, "Europe/Berlin")
	tokyo := DefaultTargets()
	tokyo.Calendar.Location = mustLoc(t, "Asia/Tokyo")
	ny := DefaultTargets()
	ny.Calendar.Location = mustLoc(t, "America/New_York")
	at := func(loc *time.Location, s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		ts   Targets
		prio Priority
		from time.Time
		want time.Time
	}{
		{"urgent counts around the clock on a Saturday night", utc, Urgent, at(time.UTC, "2026-11-28 23:00"), at(time.UTC, "2026-11-29 01:00")},
		{"high within one day", utc, High, at(time.UTC, "2026-11-23 09:00"), at(time.UTC, "2026-11-23 17:00")},
		{"high on Friday afternoon ends Monday", utc, High, at(time.UTC, "2026-11-27 15:00"), at(time.UTC, "2026-11-30 15:00")},
		{"normal from Friday spans the weekend", utc, Normal, at(time.UTC, "2026-11-27 15:00"), at(time.UTC, "2026-12-01 15:00")},
		{"normal from Saturday starts Monday at opening", utc, Normal, at(time.UTC, "2026-11-28 10:00"), at(time.UTC, "2026-12-01 17:00")},
		{"before opening counts from opening", utc, High, at(time.UTC, "2026-11-24 06:00"), at(time.UTC, "2026-11-24 17:00")},
		{"after closing counts from the next opening", utc, High, at(time.UTC, "2026-11-24 18:00"), at(time.UTC, "2026-11-25 17:00")},
		{"low is five business days", utc, Low, at(time.UTC, "2026-11-23 09:00"), at(time.UTC, "2026-11-27 17:00")},
		{"Tokyo hours for a UTC evening mail", tokyo, High, at(time.UTC, "2026-11-23 23:30"), at(tokyo.Calendar.Location, "2026-11-24 17:00")},
		{"Berlin: DST ends over the weekend", berlin, High, at(berlin.Calendar.Location, "2026-10-23 16:00"), at(berlin.Calendar.Location, "2026-10-26 16:00")},
		{"Berlin: DST starts over the weekend", berlin, Normal, at(berlin.Calendar.Location, "2026-03-27 13:00"), at(berlin.Calendar.Location, "2026-03-31 13:00")},
		{"New York: DST ends, urgent stays two real hours", ny, Urgent, at(ny.Calendar.Location, "2026-11-01 00:30"), at(ny.Calendar.Location, "2026-11-01 00:30").Add(2 * time.Hour)},
	} {
		got := tc.ts.Due(tc.prio, tc.from)
		if !got.Equal(tc.want) {
			t.Errorf("%s: due %v, want %v", tc.name, got.In(tc.want.Location()), tc.want)
		}
	}
	// The DST case really is an hour apart in UTC: Friday 14:00Z, Monday 15:00Z.
	if got := berlin.Due(High, at(berlin.Calendar.Location, "2026-10-23 16:00")).UTC().Hour(); got != 15 {
		t.Errorf("Berlin Monday after DST end: %d:00 UTC, want 15:00", got)
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]Target{"2h": {Clock: 2 * time.Hour}, "1bd": {BusinessDays: 1}, " 5bd ": {BusinessDays: 5}} {
		if got, err := ParseTarget(in); err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "2", "0bd", "-1h", "xbd", "2 days"} {
		if _, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) accepted", in)
		}
	}
}

func TestDueNoticeOncePerTarget(t *testing.T) {
	c := New(1, "s", "a@x.example", "", "support", Urgent, t0) // due t0+2h
	lead := 30 * time.Minute
	var sent []string
	for now := t0; now.Before(t0.Add(4 * time.Hour)); now = now.Add(time.Minute) {
		if kind, ok := DueNoticeNeeded(c, now, lead); ok {
			c.NoteDue(kind, now)
			sent = append(sent, kind+"@"+now.Sub(t0).String())
		}
	}
	if got := strings.Join(sent, ","); got != "at_risk@1h30m0s,missed@2h0m0s" {
		t.Fatalf("notices %s", got)
	}
	// A new target (priority lowered) may be noticed again, once.
	c.SetPriority(High, DefaultTargets(), "agent:a", "", t0)
	if kind, ok := DueNoticeNeeded(c, c.DueAt.Add(-time.Minute), lead); !ok || kind != AtRisk {
		t.Fatalf("new target: %q %v", kind, ok)
	}
	// A daemon that was down past the target sends only the missed notice.
	d := New(2, "s", "a@x.example", "", "support", Urgent, t0)
	if kind, ok := DueNoticeNeeded(d, t0.Add(5*time.Hour), lead); kind != Missed || !ok {
		t.Fatalf("late start: %q %v", kind, ok)
	}
	d.SetStatus(Closed, "agent:a", "", t0)
	if _, ok := DueNoticeNeeded(d, t0.Add(6*time.Hour), lead); ok {
		t.Fatal("closed cases get no due notice")
	}
}

func TestAutoCloseAndArchiveTiming(t *testing.T) {
	quiet, window := 7*24*time.Hour, 14*24*time.Hour
	c := New(1, "s", "a@x.example", "", "support", Normal, t0)
	if ShouldAutoClose(c, t0.Add(30*24*time.Hour), quiet) {
		t.Fatal("only solution_provided auto-closes")
	}
	c.SetStatus(SolutionProvided, "agent:a", "", t0)
	if ShouldAutoClose(c, t0.Add(quiet-time.Second), quiet) || !ShouldAutoClose(c, t0.Add(quiet), quiet) {
		t.Fatal("auto-close must happen exactly after the quiet period")
	}
	c.Messages = append(c.Messages, Message{Direction: In, Date: t0.Add(24 * time.Hour)})
	if ShouldAutoClose(c, t0.Add(quiet), quiet) {
		t.Fatal("a customer message restarts the quiet period")
	}
	closedAt := t0.Add(quiet + 24*time.Hour)
	c.SetStatus(Closed, "system", "", closedAt)
	if ShouldArchive(c, closedAt.Add(window), window) || !ShouldArchive(c, closedAt.Add(window+time.Second), window) {
		t.Fatal("archive only after the reopen window")
	}
}
