package notify

import (
	"context"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

func subjectOf(t *testing.T, r *Renderer, c *casemodel.Case, o *store.Outgoing) string {
	t.Helper()
	s, err := (&mime.WordDecoder{}).DecodeHeader(parse(t, r, c, o).Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEveryKindRendersInEveryLanguage(t *testing.T) {
	r := testRenderer(t)
	for _, lang := range Languages {
		c := casemodel.New(5, "Drucker\x07 kaputt", "a@example.com", "Ä\r\nBcc: x@evil.example", "support", casemodel.High, t0)
		c.Language = lang
		c.Assign("ann@example.com", "agent:lead", t0)
		for _, kind := range Kinds {
			o, err := r.render(kind, c, []string{"x@example.com"}, Event{From: casemodel.Open, To: casemodel.Closed,
				Actor: "agent:ann\r\nX-Evil: 1", Note: "n", Text: "t", Due: casemodel.AtRisk}, t0)
			if err != nil {
				t.Fatalf("%s/%s: %v", lang, kind, err)
			}
			m := parse(t, r, c, o)
			subject := subjectOf(t, r, c, o)
			if !strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(subject, "Re: "), "AW: "), "[Case #5] ") {
				t.Errorf("%s/%s: subject %q lacks the case tag", lang, kind, subject)
			}
			if strings.ContainsAny(subject, "\r\n\x07") || m.Header.Get("X-Evil") != "" || m.Header.Get("Bcc") != "" {
				t.Errorf("%s/%s: customer text reached a header raw: %q", lang, kind, subject)
			}
			if !slices.Contains(customerKinds, kind) && m.Header.Get("References") != "<"+r.ThreadRoot(5)+">" {
				t.Errorf("%s/%s: staff mail References %q, want the case's thread root", lang, kind, m.Header.Get("References"))
			}
			if m.Header.Get("X-Caseintake-Notification") != kind || m.Header.Get("Message-Id") == "" {
				t.Errorf("%s/%s: headers %v", lang, kind, m.Header)
			}
			want := "auto-generated"
			switch {
			case kind == KindReply:
				want = ""
			case slices.Contains(customerKinds, kind):
				want = "auto-replied"
			}
			if got := m.Header.Get("Auto-Submitted"); got != want {
				t.Errorf("%s/%s: Auto-Submitted %q, want %q", lang, kind, got, want)
			}
		}
	}
}

func TestLanguageChoice(t *testing.T) {
	r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{Team: []string{"team@example.test"}, Language: "de"})
	if err != nil {
		t.Fatal(err)
	}
	for lang, want := range map[string]string{"": "Neuer Fall", "fr-FR": "Neuer Fall", "en-GB": "New normal case", "DE": "Neuer Fall"} {
		c := casemodel.New(1, "s", "a@example.com", "", "support", casemodel.Normal, t0)
		c.Language = lang
		rows, err := r.NewCase(c, Event{}, false, t0)
		if err != nil {
			t.Fatal(err)
		}
		if got := subjectOf(t, r, c, rows[0]); !strings.Contains(got, want) {
			t.Errorf("language %q: subject %q, want %q", lang, got, want)
		}
	}
}

func TestTemplatesDirOverrides(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team_note.tmpl"), []byte(`{{define "subject"}}{{.Tag}} NOTE{{end}}{{define "body"}}{{.Note}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{Team: []string{"team@example.test"}, TemplatesDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := casemodel.New(1, "s", "a@example.com", "", "support", casemodel.Normal, t0)
	rows, _ := r.NoteAdded(c, Event{Note: "hi"}, t0)
	if got := subjectOf(t, r, c, rows[0]); got != "[Case #1] NOTE" {
		t.Errorf("override not used: %q", got)
	}
	c.Language = "de"
	rows, _ = r.NoteAdded(c, Event{Note: "hi", Actor: "a"}, t0)
	if got := subjectOf(t, r, c, rows[0]); !strings.Contains(got, "Notiz") {
		t.Errorf("the German built-in should stay: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "due.de.tmpl"), []byte(`{{define "subject"}}x{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{TemplatesDir: dir})
	if err == nil || !strings.Contains(err.Error(), `due.de.tmpl defines no "body"`) {
		t.Errorf("incomplete override: %v", err)
	}
}

// TestRecipientsPerEvent pins who hears about what.
func TestRecipientsPerEvent(t *testing.T) {
	r := testRenderer(t)
	c := casemodel.New(9, "s", "a@example.com", "", "support", casemodel.Normal, t0)
	c.AddParticipants("cc@example.com")
	to := func(rows []*store.Outgoing, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range rows {
			out = append(out, o.Kind+":"+strings.Join(o.To, ","))
		}
		return strings.Join(out, " ")
	}
	for name, tc := range map[string]struct {
		got, want string
	}{
		"reopen unassigned":  {to(r.Reopened(c, Event{From: casemodel.Closed}, t0)), "reopened:a@example.com team_reopened:team@example.test"},
		"reply unassigned":   {to(r.CustomerReplied(c, Event{}, t0)), ""},
		"due unassigned":     {to(r.DueNotice(c, Event{Due: casemodel.Missed}, t0)), "due:team@example.test"},
		"agent reply":        {to(r.Replied(c, Event{Text: "x"}, t0)), "reply:a@example.com,cc@example.com"},
		"note":               {to(r.NoteAdded(c, Event{}, t0)), "team_note:team@example.test"},
		"lowered":            {to(r.PriorityChanged(c, Event{From: "normal", To: "low"}, t0)), "team_priority:team@example.test"},
		"raised to urgent":   {to(r.PriorityChanged(c, Event{From: "normal", To: "urgent"}, t0)), "team_priority:team@example.test urgent:oncall@example.test"},
		"status to customer": {to(r.StatusChanged(c, Event{From: casemodel.Open, To: casemodel.CustomerPending}, t0)), "status:a@example.com,cc@example.com team_status:team@example.test"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", name, tc.got, tc.want)
		}
	}
	c.Assign("ann@example.com", "agent:lead", t0)
	for name, tc := range map[string]struct {
		got, want string
	}{
		"assign":          {to(r.Assigned(c, Event{}, t0)), "team_assigned:team@example.test assigned:ann@example.com"},
		"reopen assigned": {to(r.Reopened(c, Event{From: casemodel.Closed}, t0)), "reopened:a@example.com team_reopened:team@example.test assignee_reopened:ann@example.com"},
		"reply assigned":  {to(r.CustomerReplied(c, Event{}, t0)), "assignee_reply:ann@example.com"},
		"due to assignee": {to(r.DueNotice(c, Event{Due: casemodel.AtRisk}, t0)), "due:ann@example.com"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", name, tc.got, tc.want)
		}
	}
}

func TestHTMLAlternativeIsEscaped(t *testing.T) {
	dir := t.TempDir()
	src := `{{define "subject"}}{{.Tag}} {{.Case.Subject}}{{end}}{{define "body"}}Case {{.Case.Subject}} is {{status .To}}.{{end}}` +
		`{{define "html"}}<p>Case <b>{{.Case.Subject}}</b> is {{status .To}}.</p>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "status.tmpl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{TemplatesDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := casemodel.New(3, `<script>alert(1)</script>`, "a@example.com", "", "support", casemodel.Normal, t0)
	rows, err := r.StatusChanged(c, Event{From: casemodel.Open, To: casemodel.InProgress}, t0)
	if err != nil {
		t.Fatal(err)
	}
	m := parse(t, r, c, rows[0])
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, p.Header.Get("Content-Type")+"|"+string(b))
	}
	want := []string{
		"text/plain; charset=utf-8|Case <script>alert(1)</script> is in progress.",
		"text/html; charset=utf-8|<p>Case <b>&lt;script&gt;alert(1)&lt;/script&gt;</b> is in progress.</p>",
	}
	if !slices.Equal(parts, want) {
		t.Errorf("parts\n  %q\nwant\n  %q", parts, want)
	}
	if m.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Error("the multipart message lost its headers")
	}
}

// TestStopDuringDataFinishesTheTransaction stops the worker while the
// server holds its answer to DATA: the message must end up recorded as
// sent, not left pending to go out a second time at the next start.
func TestStopDuringDataFinishesTheTransaction(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	entered, release := make(chan struct{}), make(chan struct{})
	m.OnSent(func(devmail.Envelope) { close(entered); <-release })
	st := outboxWithOne(t, "team@example.test")
	sender, err := NewSender(config.SMTP{Server: config.Server{Host: m.SMTPHost, Port: m.SMTPPort, Security: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(st, testRenderer(t), sender, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the message never reached DATA")
	}
	cancel() // SIGTERM while the server has not answered DATA yet
	close(release)
	select {
	case <-done:
	case <-time.After(inFlightGrace + 5*time.Second):
		t.Fatal("the worker did not stop")
	}
	rows, err := st.Outbox(1)
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].State != store.OutboxSent || !slices.Equal(rows[0].Delivered, []string{"team@example.test"}) {
		t.Fatalf("row %s, delivered %v: it would be sent again at the next start", rows[0].State, rows[0].Delivered)
	}
}
