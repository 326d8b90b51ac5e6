package notify

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func testRenderer(t *testing.T) *Renderer {
	t.Helper()
	r, err := testRendererTB(t)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testRendererTB(testing.TB) (*Renderer, error) {
	return NewRenderer(config.SMTP{From: "Example Support <support@example.test>", EnvelopeSender: config.NullEnvelopeSender},
		config.Notify{Team: []string{"team@example.test"}, Urgent: []string{"oncall@example.test"}})
}

// parse renders queued notification o of case c as the worker sends it.
func parse(t *testing.T, r *Renderer, c *casemodel.Case, o *store.Outgoing) *mail.Message {
	t.Helper()
	data, err := r.Compose(c, o)
	if err != nil {
		t.Fatalf("%s: %v", o.Kind, err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v\n%s", o.Kind, err, data)
	}
	return m
}

func TestNewCaseNotificationsHeadersAndThreading(t *testing.T) {
	r := testRenderer(t)
	c := casemodel.New(1042, "Checkout\r\nBcc: victim@example.org down", "bob@shop.example", "Bob", "support", casemodel.Urgent, t0)
	c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@shop.example", Direction: casemodel.In})
	rows, err := r.NewCase(c, Event{Signal: "subject phrase", ReplyTo: "m1@shop.example"}, true, t0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for _, o := range rows {
		kinds = append(kinds, o.Kind)
	}
	if strings.Join(kinds, ",") != "ack,team_new,urgent" {
		t.Fatalf("kinds = %v", kinds)
	}
	for _, o := range rows {
		if o.Urgent != (o.Kind == KindUrgent) {
			t.Errorf("%s queued urgent=%v: only the escalation goes before the rest of the queue", o.Kind, o.Urgent)
		}
	}
	ack := parse(t, r, c, rows[0])
	subject, _ := (&mime.WordDecoder{}).DecodeHeader(ack.Header.Get("Subject"))
	if subject != "[Case #1042] Checkout Bcc: victim@example.org down" {
		t.Errorf("subject = %q (line breaks must not survive)", subject)
	}
	if len(ack.Header["Bcc"]) != 0 {
		t.Error("header injection: Bcc present")
	}
	for k, want := range map[string]string{
		"Auto-Submitted":            "auto-replied",
		"X-Auto-Response-Suppress":  "All",
		"X-Caseintake-Notification": "ack",
		"In-Reply-To":               "<m1@shop.example>",
		"References":                "<m1@shop.example>",
		"Message-Id":                "<" + rows[0].MessageID + ">",
	} {
		if got := ack.Header.Get(k); got != want {
			t.Errorf("ack %s = %q, want %q", k, got, want)
		}
	}
	team := parse(t, r, c, rows[1])
	if team.Header.Get("Auto-Submitted") != "auto-generated" || team.Header.Get("In-Reply-To") != "" {
		t.Errorf("team: Auto-Submitted %q, In-Reply-To %q", team.Header.Get("Auto-Submitted"), team.Header.Get("In-Reply-To"))
	}
	// Stable: rendering the same event again gives the same Message-IDs,
	// and distinct kinds never share one.
	again, _ := r.NewCase(c, Event{}, true, t0)
	seen := map[string]bool{}
	for i, o := range again {
		if o.MessageID != rows[i].MessageID {
			t.Errorf("Message-ID not stable: %s vs %s", o.MessageID, rows[i].MessageID)
		}
		if seen[o.MessageID] {
			t.Errorf("duplicate Message-ID %s", o.MessageID)
		}
		seen[o.MessageID] = true
	}
	if rows, _ := r.NewCase(c, Event{}, false, t0); rows[0].Kind != KindTeamNew {
		t.Errorf("ack=false still acknowledged: %s", rows[0].Kind)
	}
}

func TestStatusChangedTellsCustomerOnlyWhatTheySee(t *testing.T) {
	r := testRenderer(t)
	c := casemodel.New(7, "s", "a@example.com", "", "support", casemodel.Normal, t0)
	for to, wantCustomer := range map[casemodel.Status]bool{
		casemodel.InProgress: true, casemodel.CustomerPending: true, casemodel.SolutionProvided: true,
		casemodel.Closed: true, casemodel.Triaging: false, casemodel.OnHold: false,
	} {
		rows, err := r.StatusChanged(c, Event{From: casemodel.Open, To: to}, t0)
		if err != nil {
			t.Fatal(err)
		}
		gotCustomer := rows[0].Kind == KindStatus
		if gotCustomer != wantCustomer || rows[len(rows)-1].Kind != KindTeamStatus {
			t.Errorf("%s: kinds %v", to, rows)
		}
	}
}

// outboxWithOne opens a store holding one case and one queued notification.
func outboxWithOne(t *testing.T, to ...string) *store.Store {
	t.Helper()
	return queueOne(t, testRenderer(t), to...)
}

// queueOne opens a store holding case #1 and its team notice, queued by r.
func queueOne(t *testing.T, r *Renderer, to ...string) *store.Store {
	t.Helper()
	return queueOneIn(t, t.TempDir(), r, to...)
}

// queueOneIn is queueOne with the store in dir.
func queueOneIn(t *testing.T, dir string, r *Renderer, to ...string) *store.Store {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := casemodel.New(1, "Help", "a@example.com", "", "support", casemodel.Normal, t0)
	err = st.Update(func(tx *store.Tx) error {
		rows, err := r.renderAll(c, Event{}, t0, spec{KindTeamNew, to})
		if err != nil {
			return err
		}
		if err := r.Enqueue(tx, c, rows, t0); err != nil {
			return err
		}
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func startWorker(t *testing.T, st *store.Store, m *devmail.Server) *Worker {
	t.Helper()
	return startWorkerWith(t, st, m, testRenderer(t))
}

// startWorkerWith runs a worker delivering st's outbox to m, rendering
// with r.
func startWorkerWith(t *testing.T, st *store.Store, m *devmail.Server, r *Renderer) *Worker {
	t.Helper()
	return startWorkerLogging(t, st, m, r, slog.New(slog.DiscardHandler))
}

// startWorkerLogging is startWorkerWith logging to log.
func startWorkerLogging(t *testing.T, st *store.Store, m *devmail.Server, r *Renderer, log *slog.Logger) *Worker {
	t.Helper()
	sender, err := NewSender(config.SMTP{Server: config.Server{Host: m.SMTPHost, Port: m.SMTPPort, Security: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(st, r, sender, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func waitRow(t *testing.T, st *store.Store, cond func(*store.Outgoing) bool) *store.Outgoing {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := st.Outbox(1)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && cond(rows[0]) {
			return rows[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox row never reached the expected state: %+v", rows[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOutageHoldsMailThenDeliversOnce(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.SetSMTPDown(true)
	st := outboxWithOne(t, "team@example.test")
	w := startWorker(t, st, m)
	row := waitRow(t, st, func(o *store.Outgoing) bool { return o.Attempts >= 1 })
	if row.State != store.OutboxPending || row.LastError == "" || row.NextAttempt.IsZero() {
		t.Fatalf("after a failed attempt: %+v", row)
	}
	// Bring the server back and make the row due now: it goes out once.
	m.SetSMTPDown(false)
	if err := st.RecordDelivery(row.Seq, store.Delivery{Retry: context.DeadlineExceeded, NextRetry: time.Now()}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Kick()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitRow(t, st, func(o *store.Outgoing) bool { return o.State == store.OutboxSent })
	if sent, err := m.WaitSent(ctx, 1); err != nil || len(m.Sent()) != 1 {
		t.Fatalf("sent %d (%v), want exactly 1", len(sent), err)
	}
}

func TestPermanentFailureIsMarkedOnTheCase(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.FailRcpt("gone@example.test", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"})
	st := outboxWithOne(t, "gone@example.test", "team@example.test")
	startWorker(t, st, m)
	row := waitRow(t, st, func(o *store.Outgoing) bool { return o.State == store.OutboxSent })
	if len(row.Failed) != 1 || row.Failed[0] != "gone@example.test" || len(row.Delivered) != 1 {
		t.Fatalf("row = %+v", row)
	}
	c, _ := st.GetCase(1)
	last := c.Events[len(c.Events)-1]
	if last.Kind != "notification_failed" || !strings.Contains(last.Note, "No such user") {
		t.Fatalf("event = %+v", last)
	}
}

func TestTemporaryRefusalIsRetried(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.FailRcpt("full@example.test", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"})
	st := outboxWithOne(t, "full@example.test")
	startWorker(t, st, m)
	row := waitRow(t, st, func(o *store.Outgoing) bool { return o.Attempts >= 1 })
	if row.State != store.OutboxPending || !strings.Contains(row.LastError, "Mailbox full") {
		t.Fatalf("row = %+v", row)
	}
	if wait := row.NextAttempt.Sub(time.Now()); wait < 2*time.Second || wait > 10*time.Second {
		t.Fatalf("first retry in %v, want about 5 s", wait)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n <= 12; n++ {
		d := Backoff(n)
		base := min(minBackoff<<(n-1), maxBackoff)
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("Backoff(%d) = %v, want %v ±20%%", n, d, base)
		}
		if n > 1 && base < maxBackoff && d <= prev*8/10 {
			t.Errorf("Backoff(%d) = %v did not grow from %v", n, d, prev)
		}
		prev = d
	}
}

// A burst of notifications shares one SMTP connection; one the server
// dropped while idle is replaced without losing or doubling a message.
func TestSendReusesTheConnectionAndRedialsWhenDropped(t *testing.T) {
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := NewSender(config.SMTP{Server: config.Server{Host: m.SMTPHost, Port: m.SMTPPort, Security: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(i int) {
		t.Helper()
		rcpt := fmt.Sprintf("c%d@example.test", i)
		if res := s.Send(ctx, "", []string{rcpt}, []byte("Subject: x\r\n\r\nx\r\n")); res.Temporary != nil || len(res.Accepted) != 1 {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	for i := range 5 {
		send(i)
	}
	if n := m.SMTPConnections(); n != 1 {
		t.Fatalf("5 notifications took %d connections, want 1", n)
	}
	m.DropSMTPConnections()
	send(5)
	if n, sent := m.SMTPConnections(), len(m.Sent()); n != 2 || sent != 6 {
		t.Fatalf("after the server dropped the connection: %d connections, %d sent; want 2 and 6", n, sent)
	}
	s.CloseIdle()
	send(6)
	if n := m.SMTPConnections(); n != 3 {
		t.Fatalf("after CloseIdle: %d connections, want a new one (3)", n)
	}
}
