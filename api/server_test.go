package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

const token = "0123456789abcdef-test"

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) // a Monday

type fixture struct {
	st     *store.Store
	render *notify.Renderer
	client *Client
	url    string
	kicks  int
}

// newFixture serves the API over a real store with one open normal case
// #1 from alice (bob on Cc).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := notify.NewRenderer(config.SMTP{From: "Example Support <support@example.test>", EnvelopeSender: "<>"},
		config.Notify{Team: []string{"team@example.test"}, Urgent: []string{"oncall@example.test"}, Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, render: r}
	srv := NewServer(st, r, token, slog.New(slog.DiscardHandler), func() { f.kicks++ })
	srv.now = func() time.Time { return t0.Add(time.Hour) }
	err = st.Update(func(tx *store.Tx) error {
		id, _ := tx.NewCaseID()
		c := casemodel.New(id, "Checkout broken", "alice@customer.example", "Alice", "support", casemodel.Normal, t0)
		c.AddParticipants("bob@customer.example")
		c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@customer.example", Direction: casemodel.In, Date: t0})
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	f.url = hs.URL
	f.client = NewClient(strings.TrimPrefix(hs.URL, "http://"), token)
	return f
}

// message renders queued notification o as the notify worker sends it,
// from its case as it is now.
func (f *fixture) message(t *testing.T, o *store.Outgoing) []byte {
	t.Helper()
	c, err := f.st.GetCase(o.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := f.render.Compose(c, o)
	if err != nil {
		t.Fatalf("%s: %v", o.Kind, err)
	}
	return data
}

// outbox returns case #1's notifications after the first n.
func (f *fixture) outbox(t *testing.T, skip int) []*store.Outgoing {
	t.Helper()
	rows, err := f.st.Outbox(1)
	if err != nil {
		t.Fatal(err)
	}
	return rows[skip:]
}

type want struct {
	kind, subject string
	to            []string
	autoSubmitted string
}

func checkRows(t *testing.T, f *fixture, step string, rows []*store.Outgoing, wants ...want) {
	t.Helper()
	if len(rows) != len(wants) {
		var got []string
		for _, o := range rows {
			got = append(got, o.Kind+"→"+strings.Join(o.To, ","))
		}
		t.Fatalf("%s: %d notifications %v, want %d", step, len(rows), got, len(wants))
	}
	for i, w := range wants {
		o := rows[i]
		m, err := mail.ReadMessage(bytes.NewReader(f.message(t, o)))
		if err != nil {
			t.Fatalf("%s: %s: %v", step, o.Kind, err)
		}
		subject, _ := mimeDecoder.DecodeHeader(m.Header.Get("Subject"))
		if o.Kind != w.kind || !slices.Equal(o.To, w.to) || subject != w.subject {
			t.Errorf("%s #%d: %s to %v %q, want %s to %v %q", step, i, o.Kind, o.To, subject, w.kind, w.to, w.subject)
		}
		if got := m.Header.Get("Auto-Submitted"); got != w.autoSubmitted {
			t.Errorf("%s %s: Auto-Submitted %q, want %q", step, o.Kind, got, w.autoSubmitted)
		}
		if m.Header.Get("Message-Id") != "<"+o.MessageID+">" || m.Header.Get("X-Caseintake-Case") != "1" {
			t.Errorf("%s %s: Message-Id %q, case header %q", step, o.Kind, m.Header.Get("Message-Id"), m.Header.Get("X-Caseintake-Case"))
		}
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for name, hdr := range map[string]string{"missing": "", "wrong": "Bearer nope", "not bearer": "Basic " + token, "prefix": "Bearer " + token[:10]} {
		req, _ := http.NewRequest(http.MethodGet, f.url+"/api/v1/cases/1", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body["error"], "Checkout") {
			t.Errorf("%s token: %d %v", name, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/api/v1/cases/1/assignee", "/api/v1/cases/1/notes", "/api/v1/cases/1/replies", "/api/v1/cases/1/priority", "/api/v1/cases/1/status"} {
		resp, err := http.Post(f.url+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without token: %d", path, resp.StatusCode)
		}
	}
	if len(f.outbox(t, 0)) != 0 {
		t.Fatal("an unauthorised request changed something")
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"unknown case": func() error { _, err := f.client.AddNote(ctx, 99, NoteRequest{Text: "x"}); return err },
		"bad status":   func() error { _, err := f.client.SetStatus(ctx, 1, StatusRequest{Status: "resolved"}); return err },
		"refused":      func() error { _, err := f.client.SetStatus(ctx, 1, StatusRequest{Status: "archived"}); return err },
		"bad priority": func() error {
			_, err := f.client.SetPriority(ctx, 1, PriorityRequest{Priority: "critical"})
			return err
		},
		"bad agent":         func() error { _, err := f.client.Assign(ctx, 1, AssignRequest{Assignee: "ann"}); return err },
		"empty note":        func() error { _, err := f.client.AddNote(ctx, 1, NoteRequest{Text: " "}); return err },
		"empty reply":       func() error { _, err := f.client.Reply(ctx, 1, ReplyRequest{}); return err },
		"bad list priority": func() error { _, err := f.client.ListCases(ctx, store.Filter{Priority: "x"}); return err },
	} {
		err := call()
		var ae *Error
		if !errors.As(err, &ae) {
			t.Errorf("%s: %v, want an API error", name, err)
			continue
		}
		wantCode := map[string]int{"unknown case": 404, "refused": 409}[name]
		if wantCode == 0 {
			wantCode = 400
		}
		if ae.Status != wantCode {
			t.Errorf("%s: %d %q, want %d", name, ae.Status, ae.Message, wantCode)
		}
		if name == "refused" && !strings.Contains(ae.Message, "from open") {
			t.Errorf("refusal %q should name the current status", ae.Message)
		}
	}
	if len(f.outbox(t, 0)) != 0 {
		t.Fatal("a refused request queued notifications")
	}
	// Unreachable daemon.
	_, err := NewClient("127.0.0.1:1", token).ListCases(ctx, store.Filter{})
	if err == nil || !strings.Contains(err.Error(), "cannot reach caseintake at 127.0.0.1:1: is the service running?") {
		t.Errorf("unreachable: %v", err)
	}
}

// TestAgentDrivesCaseWithExactNotifications walks a case through every
// agent action and checks the exact notifications each one queues.
func TestAgentDrivesCaseWithExactNotifications(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	team := []string{"team@example.test"}
	customers := []string{"alice@customer.example", "bob@customer.example"}
	ann := []string{"ann@example.com"}
	seen := 0
	step := func(name string, call func() (*casemodel.Case, error), wants ...want) *casemodel.Case {
		t.Helper()
		c, err := call()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows := f.outbox(t, seen)
		seen += len(rows)
		checkRows(t, f, name, rows, wants...)
		return c
	}
	tag := "[Case #1] "
	c := step("assign", func() (*casemodel.Case, error) {
		return f.client.Assign(ctx, 1, AssignRequest{Assignee: "Ann <ANN@example.com>", Actor: "lead@example.com"})
	},
		want{notify.KindTeamAssigned, tag + "Assigned to ann@example.com: Checkout broken", team, "auto-generated"},
		want{notify.KindAssigned, tag + "Assigned to you: Checkout broken", ann, "auto-generated"})
	if c.Assignee != "ann@example.com" {
		t.Fatalf("assignee %q", c.Assignee)
	}
	step("assign again changes nothing", func() (*casemodel.Case, error) {
		return f.client.Assign(ctx, 1, AssignRequest{Assignee: "ann@example.com"})
	})
	step("note", func() (*casemodel.Case, error) {
		return f.client.AddNote(ctx, 1, NoteRequest{Text: "checked the logs", Actor: "ann@example.com"})
	}, want{notify.KindTeamNote, tag + "Note by agent:ann@example.com: Checkout broken", team, "auto-generated"})
	due := *c.DueAt
	c = step("raise to urgent", func() (*casemodel.Case, error) {
		return f.client.SetPriority(ctx, 1, PriorityRequest{Priority: "urgent", Actor: "ann@example.com"})
	},
		want{notify.KindTeamPriority, tag + "Priority normal -> urgent: Checkout broken", team, "auto-generated"},
		want{notify.KindUrgent, tag + "URGENT: Checkout broken", []string{"oncall@example.test"}, "auto-generated"})
	if c.DueAt == nil || !c.DueAt.Equal(t0.Add(2*time.Hour)) || !c.DueAt.Before(due) {
		t.Fatalf("urgent target %v (was %v)", c.DueAt, due)
	}
	step("in progress", func() (*casemodel.Case, error) {
		return f.client.SetStatus(ctx, 1, StatusRequest{Status: "in_progress"})
	},
		want{notify.KindStatus, tag + "Status: in progress - Checkout broken", customers, "auto-replied"},
		want{notify.KindTeamStatus, tag + "open -> in_progress: Checkout broken", team, "auto-generated"})
	step("triaging is internal", func() (*casemodel.Case, error) {
		return f.client.SetStatus(ctx, 1, StatusRequest{Status: "triaging"})
	}, want{notify.KindTeamStatus, tag + "in_progress -> triaging: Checkout broken", team, "auto-generated"})
	c = step("reply", func() (*casemodel.Case, error) {
		return f.client.Reply(ctx, 1, ReplyRequest{Text: "Please clear the cache.", Actor: "ann@example.com"})
	}, want{notify.KindReply, "Re: " + tag + "Checkout broken", customers, ""})
	if c.DueAt != nil || c.FirstResponseAt == nil {
		t.Fatal("the first reply must clear the target")
	}
	last := c.Messages[len(c.Messages)-1]
	if last.Direction != casemodel.Out || last.Kind != notify.KindReply || last.Text != "Please clear the cache." {
		t.Fatalf("reply not recorded on the case: %+v", last)
	}
	replyRow := f.outbox(t, seen-1)[0]
	replyData := f.message(t, replyRow)
	m, _ := mail.ReadMessage(bytes.NewReader(replyData))
	if m.Header.Get("In-Reply-To") != "<m1@customer.example>" || !strings.Contains(string(replyData), "Please clear the cache.") {
		t.Errorf("reply threading: In-Reply-To %q", m.Header.Get("In-Reply-To"))
	}
	if id, ok := viewCaseByMsgID(t, f.st, replyRow.MessageID); !ok || id != 1 {
		t.Error("the reply's Message-ID does not thread back to the case")
	}
	step("solution", func() (*casemodel.Case, error) {
		return f.client.SetStatus(ctx, 1, StatusRequest{Status: "solution_provided", Note: "cache cleared"})
	},
		want{notify.KindStatus, tag + "Status: solution provided - Checkout broken", customers, "auto-replied"},
		want{notify.KindTeamStatus, tag + "triaging -> solution_provided: Checkout broken", team, "auto-generated"})
	step("close", func() (*casemodel.Case, error) { return f.client.SetStatus(ctx, 1, StatusRequest{Status: "closed"}) },
		want{notify.KindStatus, tag + "Status: closed - Checkout broken", customers, "auto-replied"},
		want{notify.KindTeamStatus, tag + "solution_provided -> closed: Checkout broken", team, "auto-generated"})
	if _, err := f.client.SetPriority(ctx, 1, PriorityRequest{Priority: "low"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("priority on a closed case: %v", err)
	}
	view, err := f.client.Case(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range view.Events {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "created,assigned,note,priority,status,status,reply,status,status" {
		t.Errorf("events %s", got)
	}
	if len(view.Notifications) != seen {
		t.Errorf("show lists %d notifications, outbox has %d", len(view.Notifications), seen)
	}
	list, err := f.client.ListCases(ctx, store.Filter{Assignee: "ann@example.com", Text: "checkout", Status: casemodel.Closed})
	if err != nil || len(list) != 1 {
		t.Fatalf("list by assignee/text/status: %v %v", list, err)
	}
	if f.kicks == 0 {
		t.Error("the outbox worker was never kicked")
	}
}

func TestGermanCaseGetsGermanMail(t *testing.T) {
	f := newFixture(t)
	_ = f.st.Update(func(tx *store.Tx) error {
		c, _ := tx.Case(1)
		c.Language = "de-DE"
		return tx.PutCase(c)
	})
	if _, err := f.client.SetStatus(context.Background(), 1, StatusRequest{Status: "customer_pending"}); err != nil {
		t.Fatal(err)
	}
	rows := f.outbox(t, 0)
	m, _ := mail.ReadMessage(bytes.NewReader(f.message(t, rows[0])))
	subject, _ := mimeDecoder.DecodeHeader(m.Header.Get("Subject"))
	if subject != "[Case #1] Status: wartet auf Ihre Antwort - Checkout broken" {
		t.Errorf("German subject %q", subject)
	}
}

func viewCaseByMsgID(t *testing.T, st *store.Store, id string) (uint64, bool) {
	var got uint64
	var ok bool
	_ = st.View(func(tx *store.Tx) error { got, ok = tx.CaseByMessageID(id); return nil })
	return got, ok
}

var mimeDecoder = mime.WordDecoder{}

func TestTraceNeedsMessageID(t *testing.T) {
	f := newFixture(t)
	_, err := f.client.Trace(context.Background(), " ")
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "message_id is required") {
		t.Errorf("trace without id: %v", err)
	}
	ds, err := f.client.Trace(context.Background(), "<never@seen.example>")
	if err != nil || len(ds) != 0 {
		t.Errorf("trace of an unknown id: %v %v", ds, err)
	}
}
