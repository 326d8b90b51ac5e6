package lifecycle

import (
	"bytes"
	"context"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) // a Monday

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func setup(t *testing.T) (*store.Store, *Worker, *clock) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := notify.NewRenderer(config.SMTP{From: "Example Support <support@example.test>", EnvelopeSender: "<>"},
		config.Notify{Team: []string{"team@example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: t0}
	w := New(st, r, Options{ReopenWindow: 14 * 24 * time.Hour, AutoCloseAfter: 7 * 24 * time.Hour,
		AtRiskLead: 30 * time.Minute, Now: clk.Now}, slog.New(slog.DiscardHandler), nil)
	return st, w, clk
}

func putCase(t *testing.T, st *store.Store, prio casemodel.Priority, edit func(*casemodel.Case)) uint64 {
	t.Helper()
	var id uint64
	err := st.Update(func(tx *store.Tx) error {
		var err error
		if id, err = tx.NewCaseID(); err != nil {
			return err
		}
		c := casemodel.New(id, "Help", "alice@customer.example", "", "support", prio, t0)
		if edit != nil {
			edit(c)
		}
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func kinds(t *testing.T, st *store.Store, id uint64) []string {
	t.Helper()
	rows, err := st.Outbox(id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range rows {
		out = append(out, o.Kind+"→"+strings.Join(o.To, ","))
	}
	return out
}

func TestArchiveAfterReopenWindow(t *testing.T) {
	st, w, clk := setup(t)
	id := putCase(t, st, casemodel.Normal, func(c *casemodel.Case) { c.SetStatus(casemodel.Closed, "agent:a", "", t0) })
	clk.now = t0.Add(14 * 24 * time.Hour)
	dbFile := filepath.Join(st.Dir(), store.DBFile)
	before, _ := os.Stat(dbFile)
	if res, err := w.RunOnce(); err != nil || res.Archived != 0 {
		t.Fatalf("inside the window: %+v %v", res, err)
	}
	if after, _ := os.Stat(dbFile); !after.ModTime().Equal(before.ModTime()) {
		t.Error("a run with nothing to do wrote to the database")
	}
	clk.now = t0.Add(14*24*time.Hour + time.Minute)
	if res, err := w.RunOnce(); err != nil || res.Archived != 1 {
		t.Fatalf("after the window: %+v %v", res, err)
	}
	c, _ := st.GetCase(id)
	last := c.Events[len(c.Events)-1]
	if c.Status != casemodel.Archived || last.Actor != "system" || last.From != "closed" || last.To != "archived" {
		t.Fatalf("status %s, event %+v", c.Status, last)
	}
	if k := kinds(t, st, id); len(k) != 0 {
		t.Errorf("archiving sends nothing, got %v", k)
	}
	if res, _ := w.RunOnce(); res.Archived != 0 {
		t.Error("archived twice")
	}
}

func TestAutoCloseAfterQuietPeriod(t *testing.T) {
	st, w, clk := setup(t)
	solved := t0.Add(time.Hour)
	quiet := putCase(t, st, casemodel.Normal, func(c *casemodel.Case) {
		c.SetStatus(casemodel.SolutionProvided, "agent:a", "", solved)
		c.AddParticipants("bob@customer.example")
	})
	answered := putCase(t, st, casemodel.Normal, func(c *casemodel.Case) {
		c.SetStatus(casemodel.SolutionProvided, "agent:a", "", solved)
		c.Messages = append(c.Messages, casemodel.Message{Direction: casemodel.In, Date: solved.Add(48 * time.Hour)})
	})
	clk.now = solved.Add(7*24*time.Hour - time.Second)
	if res, _ := w.RunOnce(); res.AutoClosed != 0 {
		t.Fatal("closed before the quiet period ended")
	}
	clk.now = solved.Add(7 * 24 * time.Hour)
	if res, err := w.RunOnce(); err != nil || res.AutoClosed != 1 {
		t.Fatalf("run: %+v %v", res, err)
	}
	c, _ := st.GetCase(quiet)
	if c.Status != casemodel.Closed || c.ClosedAt == nil || !c.ClosedAt.Equal(clk.now) {
		t.Fatalf("quiet case: %s %v", c.Status, c.ClosedAt)
	}
	want := []string{"status→alice@customer.example,bob@customer.example", "team_status→team@example.test"}
	if got := kinds(t, st, quiet); !slices.Equal(got, want) {
		t.Errorf("auto-close notifications %v, want %v", got, want)
	}
	if c, _ := st.GetCase(answered); c.Status != casemodel.SolutionProvided {
		t.Errorf("a case the customer answered was closed early: %s", c.Status)
	}
}

// TestDueNoticesFireOnceAndAreDelivered runs the jobs every minute past a
// target and checks that exactly one at-risk and one missed notice leave,
// through the outbox and a real SMTP server, to the assignee or the team.
func TestDueNoticesFireOnceAndAreDelivered(t *testing.T) {
	st, w, clk := setup(t)
	assigned := putCase(t, st, casemodel.Urgent, func(c *casemodel.Case) { c.Assign("ann@example.com", "agent:lead", t0) })
	unassigned := putCase(t, st, casemodel.Urgent, nil)
	answered := putCase(t, st, casemodel.Urgent, func(c *casemodel.Case) {
		c.RecordReply(casemodel.Message{MessageID: "r@x"}, "agent:ann", t0.Add(time.Minute))
	})
	for clk.now = t0; clk.now.Before(t0.Add(3 * time.Hour)); clk.now = clk.now.Add(time.Minute) {
		if _, err := w.RunOnce(); err != nil {
			t.Fatal(err)
		}
	}
	for id, to := range map[uint64]string{assigned: "ann@example.com", unassigned: "team@example.test"} {
		if got, want := kinds(t, st, id), []string{"due→" + to, "due→" + to}; !slices.Equal(got, want) {
			t.Errorf("case #%d: %v, want %v", id, got, want)
		}
	}
	if got := kinds(t, st, answered); len(got) != 0 {
		t.Errorf("an answered case got due notices: %v", got)
	}

	srv, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sender, err := notify.NewSender(config.SMTP{Server: config.Server{Host: srv.SMTPHost, Port: srv.SMTPPort, Security: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw := notify.NewWorker(st, w.render, sender, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { _ = nw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	msgs, err := srv.WaitSent(wctx, 4)
	if err != nil {
		t.Fatalf("waiting for 4 due notices over SMTP: %v", err)
	}
	var subjects []string
	for _, m := range msgs {
		pm, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		if pm.Header.Get("Auto-Submitted") != "auto-generated" || pm.Header.Get("X-Caseintake-Notification") != "due" {
			t.Errorf("due notice headers: %v", pm.Header)
		}
		subjects = append(subjects, pm.Header.Get("Subject"))
	}
	slices.Sort(subjects)
	want := []string{"[Case #1] First-response target MISSED: Help", "[Case #1] First-response target at risk: Help",
		"[Case #2] First-response target MISSED: Help", "[Case #2] First-response target at risk: Help"}
	if !slices.Equal(subjects, want) {
		t.Errorf("subjects %q", subjects)
	}
}

func TestTargetsFromConfig(t *testing.T) {
	l := config.Lifecycle{BusinessHours: config.BusinessHours{TimeZone: "Europe/Berlin", Days: []string{"mon", "tue"}, Start: "08:00", End: "12:00"},
		ResponseTargets: config.ResponseTargets{High: "1bd", Urgent: "30m"}}
	ts, err := Targets(l)
	if err != nil {
		t.Fatal(err)
	}
	if ts.ByPriority[casemodel.Urgent].Clock != 30*time.Minute || ts.ByPriority[casemodel.Low].BusinessDays != 5 {
		t.Fatalf("targets %+v", ts.ByPriority)
	}
	// Tuesday 11:00 Berlin + one 4-hour business day: 1h Tuesday, 3h next Monday.
	from := time.Date(2026, 11, 24, 11, 0, 0, 0, ts.Calendar.Location)
	if got, want := ts.Due(casemodel.High, from), time.Date(2026, 11, 30, 11, 0, 0, 0, ts.Calendar.Location); !got.Equal(want) {
		t.Errorf("due %v, want %v", got, want)
	}
}

// TestDocumentedLifecycleBlockLoads loads the lifecycle block as README
// documents it (with non-default values) and builds its targets.
func TestDocumentedLifecycleBlockLoads(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/caseintake.yaml"
	cfg := `data_dir: ` + dir + `
mailboxes:
  - name: support
    address: support@example.com
    imap: {host: imap.example.com, port: 993, security: tls, password: imap-secret}
smtp: {host: smtp.example.com, port: 587, security: starttls, from: "Support <support@example.com>"}
notify:
  team: [team@example.com]
  language: de
  templates_dir: ` + dir + `
api: {listen: 127.0.0.1:8025, token: 0123456789abcdef0123}
lifecycle:
  interval: 30s
  auto_close_after: 72h
  at_risk_lead: 1h
  business_hours:
    time_zone: Europe/Berlin
    days: [mon, tue, wed, thu]
    start: "08:30"
    end: "24:00"
  response_targets: {urgent: 1h, high: 2bd, normal: 3bd, low: 10bd}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Lifecycle
	if l.Interval != 30*time.Second || l.AutoCloseAfter != 72*time.Hour || l.AtRiskLead != time.Hour || c.Notify.Language != "de" {
		t.Fatalf("lifecycle %+v, language %q", l, c.Notify.Language)
	}
	ts, err := Targets(l)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Calendar.Location.String() != "Europe/Berlin" || len(ts.Calendar.Days) != 4 || ts.Calendar.DayLength() != 15*time.Hour+30*time.Minute ||
		ts.ByPriority[casemodel.Low].BusinessDays != 10 {
		t.Fatalf("targets %+v", ts)
	}
	// Defaults: a config without the block gets design.md's policy.
	var empty config.Lifecycle
	empty.ApplyDefaults()
	if empty.AutoCloseAfter != 7*24*time.Hour || empty.AtRiskLead != 30*time.Minute || empty.ResponseTargets.Normal != "2bd" {
		t.Fatalf("defaults %+v", empty)
	}
}

// TestRunActsAtOnceAndStops checks the loop: it runs at start, kicks the
// outbox worker when it queued mail, and returns when ctx ends.
func TestRunActsAtOnceAndStops(t *testing.T) {
	st, _, _ := setup(t)
	r, _ := notify.NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{Team: []string{"team@example.test"}})
	kicked := make(chan struct{}, 10)
	solved := time.Now().Add(-8 * 24 * time.Hour)
	id := putCase(t, st, casemodel.Normal, func(c *casemodel.Case) {
		c.CreatedAt = solved
		c.FirstResponseAt = &solved
		c.SetStatus(casemodel.SolutionProvided, "agent:a", "", solved)
	})
	w := New(st, r, Options{ReopenWindow: time.Hour, AutoCloseAfter: 7 * 24 * time.Hour, Interval: time.Hour},
		slog.New(slog.DiscardHandler), func() { kicked <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-kicked:
	case <-time.After(10 * time.Second):
		t.Fatal("the first run did not kick the outbox worker")
	}
	if c, _ := st.GetCase(id); c.Status != casemodel.Closed {
		t.Errorf("status %s after the first run", c.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
