package notify

import (
	"context"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

// A notification is queued as the change it tells of; the customer's
// text it quotes is read from the case when it is sent, not copied into
// the outbox (a backlog's team notices had doubled what it wrote).
func TestQueuedNoticeRefersToTheCaseTextInsteadOfCopyingIt(t *testing.T) {
	r := testRenderer(t)
	text := strings.Repeat("The checkout returns error 500 since the update. ", 100) // over the 2,000-character excerpt
	c := casemodel.New(7, "Checkout down", "bob@shop.example", "Bob", "support", casemodel.Normal, t0)
	c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@shop.example", Direction: casemodel.In, Text: text})
	rows, err := r.NewCase(c, Event{Text: text, TextOf: "m1@shop.example", ReplyTo: "m1@shop.example"}, false, t0)
	if err != nil {
		t.Fatal(err)
	}
	team := rows[0]
	if team.Kind != KindTeamNew || team.Data != nil {
		t.Fatalf("row %s queued with %d bytes rendered, want the team notice, unrendered", team.Kind, len(team.Data))
	}
	if len(team.Event) > 200 || strings.Contains(string(team.Event), "checkout") {
		t.Fatalf("queued event copies the customer's text (%d bytes): %s", len(team.Event), team.Event)
	}
	body := bodyText(t, parse(t, r, c, team))
	if !strings.Contains(body, "The checkout returns error 500") || !strings.HasSuffix(strings.TrimSpace(body), "[…]") {
		t.Fatalf("team notice lacks the excerpt of the customer's text:\n%s", body)
	}
}

// A text that is not the named case message's (or names none) is kept
// with the notification, as an excerpt.
func TestQueuedTextNotOnTheCaseIsKept(t *testing.T) {
	r := testRenderer(t)
	c := casemodel.New(7, "Checkout down", "bob@shop.example", "Bob", "support", casemodel.Normal, t0)
	c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@shop.example", Direction: casemodel.In, Text: "another text"})
	for _, textOf := range []string{"", "m1@shop.example", "missing@shop.example"} {
		rows, err := r.NewCase(c, Event{Text: "Printer on fire", TextOf: textOf}, false, t0)
		if err != nil {
			t.Fatal(err)
		}
		if body := bodyText(t, parse(t, r, c, rows[0])); !strings.Contains(body, "Printer on fire") {
			t.Errorf("TextOf %q: the notice lost its text:\n%s", textOf, body)
		}
	}
}

// The worker renders a notification when it sends it, from the case as it
// is then.
func TestWorkerRendersFromTheCaseAsItIsWhenSending(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := outboxWithOne(t, "team@example.test")
	err = st.Update(func(tx *store.Tx) error {
		c, err := tx.Case(1)
		if err != nil {
			return err
		}
		c.SetPriority(casemodel.High, casemodel.DefaultTargets(), "agent:ann", "", t0)
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, st, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent, err := m.WaitSent(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if body := string(sent[0].Data); !strings.Contains(body, "Priority: high") {
		t.Fatalf("the team notice shows the case as queued, not as it is:\n%s", body)
	}
}

// A row queued by a caseintake before schema 6 holds its rendered message:
// it is sent as it is, without its case.
func TestRowRenderedWhenQueuedIsSentAsItWas(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	old := []byte("From: support@example.test\r\nTo: team@example.test\r\nSubject: rendered long ago\r\nMessage-Id: <old@example.test>\r\n\r\nas rendered\r\n")
	err = st.Update(func(tx *store.Tx) error {
		return tx.Enqueue(&store.Outgoing{CaseID: 1, Kind: KindTeamNew, MessageID: "old@example.test", To: []string{"team@example.test"}, Data: old})
	})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, st, m)
	waitRow(t, st, func(o *store.Outgoing) bool { return o.State == store.OutboxSent })
	if sent := m.Sent(); len(sent) != 1 || !strings.Contains(string(sent[0].Data), "as rendered") {
		t.Fatalf("sent %d messages, want the one rendered when it was queued", len(sent))
	}
}

// A template that fails when the notification is sent (an operator's
// override in notify.templates_dir) sends nothing and leaves the
// notification pending with the error, to go out once the template is
// fixed.
func TestTemplateFailingWhenSentLeavesTheNotificationPending(t *testing.T) {
	dir := t.TempDir()
	src := `{{define "subject"}}{{.Tag}} new{{end}}{{define "body"}}{{.Case.NoSuchField}}{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "team_new.tmpl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{TemplatesDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := queueOne(t, r, "team@example.test")
	startWorkerWith(t, st, m, r)
	row := waitRow(t, st, func(o *store.Outgoing) bool { return o.Attempts >= 1 })
	if row.State != store.OutboxPending || !strings.Contains(row.LastError, "NoSuchField") || row.NextAttempt.IsZero() {
		t.Fatalf("after the template failed: %+v", row)
	}
	if sent := m.Sent(); len(sent) != 0 {
		t.Fatalf("sent %d messages from a failing template", len(sent))
	}
}

// bodyText is the decoded body of a single-part notification.
func bodyText(t *testing.T, m *mail.Message) string {
	t.Helper()
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
