package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

// quarantineRaw hands raw to the pipeline as mailbox UID uid and returns
// the quarantine record it made.
func (h *harness) quarantineRaw(uid uint32, raw string) *store.Decision {
	h.t.Helper()
	disp := h.pipeline.Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: uid,
		Size: int64(len(raw)), InternalDate: time.Now(), Body: strings.NewReader(raw)})
	if disp.Action != mailbox.Quarantine {
		h.t.Fatalf("UID %d: %+v, want a quarantine", uid, disp)
	}
	d, err := h.store.DecisionByUID("support", 1, uid)
	if err != nil || d == nil {
		h.t.Fatalf("UID %d: no decision recorded: %v", uid, err)
	}
	return d
}

// tooDeep is a request nested deeper than the default MIME depth limit.
func tooDeep(from, subject, msgID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\n", from, supportAddr, subject, msgID)
	for i := range 30 {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nour invoices fail\r\n")
	return b.String()
}

// TestReleaseOpensACaseFromAnUnparseableMessage: an agent releases a
// message whose body cannot be parsed; the case is for its sender, the
// customer and the team are told, the decision names the agent, and the
// message leaves the quarantine list for good.
func TestReleaseOpensACaseFromAnUnparseableMessage(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	q := h.quarantineRaw(5, tooDeep("Alice <alice@customer.example>", "Production down: invoices", "deep@customer.example"))

	d, err := h.pipeline.Release(q.Seq, Release{Actor: "agent:ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != store.OutcomeNewCase || d.Supersedes != q.Seq || d.CaseID == 0 || d.UID != 5 {
		t.Fatalf("release decision %+v", d)
	}
	for _, want := range []string{"released from quarantine by agent:ann@example.test", "was quarantined:limit:depth",
		"requester alice@customer.example from From", "its body cannot be read", `subject phrase "Production down": urgent`} {
		if !strings.Contains(d.Signal, want) {
			t.Errorf("signal %q lacks %q", d.Signal, want)
		}
	}
	c := h.caseByID(d.CaseID)
	if c.Requester != "alice@customer.example" || c.Subject != "Production down: invoices" || c.Priority != "urgent" ||
		c.Messages[0].RawRef != q.RawRef || c.Messages[0].MessageID != "deep@customer.example" {
		t.Fatalf("case %+v", c)
	}
	if last := c.Events[len(c.Events)-1]; last.Kind != "released" || last.Actor != "agent:ann@example.test" {
		t.Errorf("last event %+v, want released by the agent", last)
	}
	mails := h.waitSent(3) // on-call first, then the acknowledgement and the team's notice
	if !slices.ContainsFunc(mails, func(e sent) bool { return slices.Equal(e.To, []string{"alice@customer.example"}) }) {
		t.Errorf("sent %d notifications, none of them the acknowledgement to alice", len(mails))
	}
	if left, _ := h.store.Quarantined(0); len(left) != 0 {
		t.Errorf("still listed in quarantine: %+v", left)
	}
	if _, err := h.pipeline.Release(q.Seq, Release{Actor: "agent:bob@example.test"}); !errors.Is(err, store.ErrNotRetryable) ||
		!strings.Contains(err.Error(), fmt.Sprintf("record %d decided the message as case:new (case #%d)", d.Seq, d.CaseID)) {
		t.Errorf("second release: %v", err)
	}
	if _, err := h.pipeline.Release(d.Seq, Release{Actor: "agent:ann@example.test"}); !errors.Is(err, store.ErrNotRetryable) {
		t.Errorf("release of a case decision: %v", err)
	}
	if _, err := h.pipeline.Release(4242, Release{Actor: "agent:ann@example.test"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("release of an unknown record: %v", err)
	}
}

// TestReleaseWithoutASenderNeedsARequester: a message with no readable
// header and one too large to download name nobody, so the agent must;
// with a requester (and a subject) they become cases.
func TestReleaseWithoutASenderNeedsARequester(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	garbage := h.quarantineRaw(6, "\x00\x01 this is not a mail message\r\n")
	disp := h.pipeline.Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: 7,
		MessageID: "huge@customer.example", Size: 1 << 30, Oversize: true})
	if disp.Action != mailbox.Quarantine {
		t.Fatalf("oversize: %+v", disp)
	}
	huge, _ := h.store.DecisionByUID("support", 1, 7)

	for _, q := range []*store.Decision{garbage, huge} {
		_, err := h.pipeline.Release(q.Seq, Release{Actor: "agent:ann@example.test"})
		if !errors.Is(err, store.ErrNoRequester) || !strings.Contains(err.Error(), "--requester EMAIL") {
			t.Errorf("%s without a requester: %v", q.Outcome, err)
		}
	}
	if _, err := h.pipeline.Release(garbage.Seq, Release{Actor: "agent:ann@example.test", Requester: "not an address"}); !errors.Is(err, store.ErrNoRequester) {
		t.Errorf("a requester that is no address: %v", err)
	}

	d, err := h.pipeline.Release(garbage.Seq, Release{Actor: "agent:ann@example.test", Requester: "Carol <Carol@Customer.example>", Subject: "Garbled mail from Carol"})
	if err != nil {
		t.Fatal(err)
	}
	c := h.caseByID(d.CaseID)
	if c.Requester != "carol@customer.example" || c.Subject != "Garbled mail from Carol" ||
		!strings.Contains(d.Signal, "from --requester") || !strings.Contains(d.Signal, "nothing could be read") {
		t.Errorf("case %s for %s; signal %q", c.Subject, c.Requester, d.Signal)
	}
	d, err = h.pipeline.Release(huge.Seq, Release{Actor: "agent:ann@example.test", Requester: "dave@customer.example"})
	if err != nil {
		t.Fatal(err)
	}
	if c := h.caseByID(d.CaseID); c.Subject != "(no subject)" || !strings.Contains(d.Signal, "never downloaded") {
		t.Errorf("oversize release: case %q, signal %q", c.Subject, d.Signal)
	}
	h.waitSent(4) // an acknowledgement and a team notice for each
}

// TestReleaseSalvagesAnUnreadableHeader: when classify refuses the header
// itself (here: larger than its limit), a lenient reader still finds the
// sender and subject; a message quarantined as a loop is released without
// an acknowledgement.
func TestReleaseSalvagesAnUnreadableHeader(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true, tune: func(o *Options) {
		o.Limits.MaxHeaderBytes = 1024
		o.MaxReceived = 3
	}})
	big := msg("=?utf-8?q?Eva_M=C3=BCller?= <eva@customer.example>", "=?utf-8?q?Kein_Zugriff_f=C3=BCr_M=C3=BCller?=", "big@customer.example",
		"X-Padding: "+strings.Repeat("x", 2000))
	q := h.quarantineRaw(8, big)
	if q.Outcome != store.OutcomeQuarantined+":limit:header-size" {
		t.Fatalf("outcome %s", q.Outcome)
	}
	d, err := h.pipeline.Release(q.Seq, Release{Actor: "agent:ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	c := h.caseByID(d.CaseID)
	if c.Requester != "eva@customer.example" || c.RequesterName != "Eva Müller" || c.Subject != "Kein Zugriff für Müller" ||
		!strings.Contains(c.Messages[0].Text, "please help") || !strings.Contains(d.Signal, "read leniently") {
		t.Errorf("case %+v\nsignal %q", c, d.Signal)
	}

	loop := h.quarantineRaw(9, msg("frank@customer.example", "Where is my order", "loop@customer.example",
		"Received: a", "Received: b", "Received: c", "Received: d"))
	d, err = h.pipeline.Release(loop.Seq, Release{Actor: "agent:ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Signal, "no acknowledgement: it was quarantined as a mail loop") {
		t.Errorf("loop release signal %q", d.Signal)
	}
	sent := h.waitSent(3) // eva's acknowledgement and team notice, the loop's team notice only
	for _, s := range sent {
		if s.To[0] == "frank@customer.example" {
			t.Errorf("the looping sender was acknowledged")
		}
	}
}
