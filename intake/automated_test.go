package intake

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

// autoResponder answers every mail sent to addr with a fresh message to
// the support address: no Auto-Submitted, no Precedence, no In-Reply-To,
// a subject of its own. It counts what it sent.
type autoResponder struct {
	mu   sync.Mutex
	addr string
	ids  []string
}

func (a *autoResponder) install(h *harness) {
	h.mail.OnSent(func(e devmail.Envelope) {
		if !slices.Contains(e.To, a.addr) {
			return
		}
		a.send(h)
	})
}

func (a *autoResponder) send(h *harness) {
	a.mu.Lock()
	id := fmt.Sprintf("bot-%d@loop.example", len(a.ids)+1)
	a.ids = append(a.ids, id)
	a.mu.Unlock()
	// A bot answers within a second; the ack history is keyed by time, so
	// the frozen test clock must move (all still within the hour's window).
	h.clock.Advance(time.Second)
	raw := msg("Loop Corp <"+a.addr+">", "Thanks for writing to Loop Corp", id)
	if _, err := h.mail.Deliver(supportAddr, "INBOX", []byte(raw)); err != nil {
		h.t.Errorf("auto-responder cannot deliver: %v", err)
	}
}

func (a *autoResponder) sent() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ids)
}

func acksTo(envs []devmail.Envelope, rcpt string) int {
	n := 0
	for _, e := range envs {
		if slices.Contains(e.To, rcpt) && strings.Contains(string(e.Data), "X-Caseintake-Notification: ack") {
			n++
		}
	}
	return n
}

// settled reports whether every message the test put in the mailbox is
// decided and every notification left.
func (h *harness) settled(ids []string) bool {
	for _, id := range ids {
		if ds, err := h.store.Trace(id); err != nil || len(ds) == 0 {
			return false
		}
	}
	st, err := h.store.OutboxStats()
	return err == nil && st.Pending == 0 && len(h.folder(supportAddr, "INBOX")) == 0
}

// An auto-responder that marks nothing answers every acknowledgement with
// a new mail: each opens a case, and without a cap each would be
// acknowledged. The per-recipient cap ends the loop after AckLimit acks.
func TestAutoResponderLoopStopsAtPerRecipientCap(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	bot := &autoResponder{addr: "bot@loop.example"}
	bot.install(h)
	bot.send(h) // the first mail of the loop

	h.waitFor("the loop to end (every bot mail decided, outbox empty)", func() bool {
		ids := bot.sent()
		return len(ids) > DefaultAckLimit && h.settled(ids)
	})
	ids := bot.sent()
	if len(ids) != DefaultAckLimit+1 {
		t.Fatalf("the auto-responder sent %d mails, want %d: the loop did not stop at the cap", len(ids), DefaultAckLimit+1)
	}
	if n := acksTo(h.mail.Sent(), bot.addr); n != DefaultAckLimit {
		t.Fatalf("%d acknowledgements to the auto-responder, want %d", n, DefaultAckLimit)
	}
	first, _ := h.store.Trace(ids[0])
	if first[0].Outcome != store.OutcomeNewCase || strings.Contains(first[0].Signal, "suppressed") {
		t.Fatalf("first bot mail: %s / %s; want an acknowledged new case (the bot sets no header)", first[0].Outcome, first[0].Signal)
	}
	last, _ := h.store.Trace(ids[len(ids)-1])
	if !strings.Contains(last[0].Signal, "acknowledgement suppressed") {
		t.Fatalf("last bot mail: %s / %s; want the acknowledgement suppressed", last[0].Outcome, last[0].Signal)
	}
}

// The global cap stops acknowledgements to many different addresses, and
// says so in one warning, not one per message.
func TestGlobalAckCap(t *testing.T) {
	h := newHarness(t, harnessOpts{tune: func(o *Options) { o.GlobalAckLimit = 3 }})
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("g%d@customer.example", i)
		ids = append(ids, id)
		h.deliver(supportAddr, msg(fmt.Sprintf("user%d@customer.example", i), "Help", id))
	}
	h.waitFor("all eight decided", func() bool { return h.settled(ids) })
	acks := 0
	for _, e := range h.mail.Sent() {
		if strings.Contains(string(e.Data), "X-Caseintake-Notification: ack") {
			acks++
		}
	}
	if acks != 3 {
		t.Fatalf("%d acknowledgements, want 3 (intake.ack_limit_global)", acks)
	}
	suppressed := 0
	for _, id := range ids {
		ds, _ := h.store.Trace(id)
		if ds[0].Outcome != store.OutcomeNewCase {
			t.Errorf("<%s>: %s, want a new case (the cap stops the ack, not the case)", id, ds[0].Outcome)
		}
		if strings.Contains(ds[0].Signal, "intake.ack_limit_global") {
			suppressed++
		}
	}
	if suppressed != 5 {
		t.Fatalf("%d decisions name the global cap, want 5", suppressed)
	}
	if n := h.logged("global acknowledgement cap reached"); n != 1 {
		t.Errorf("the cap was warned about %d times for 5 suppressed acknowledgements, want once", n)
	}
}

// More Received header fields than the limit: a loop, quarantined.
func TestTooManyReceivedHeadersQuarantinedAsLoop(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	hops := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("Received: from relay%d.example by relay%d.example; Mon, 23 Nov 2026 08:00:00 +0000", i, i+1))
		}
		return out
	}
	h.deliver(supportAddr, msg("alice@customer.example", "Looped", "loop@customer.example", hops(DefaultMaxReceived+1)...))
	h.deliver(supportAddr, msg("bob@customer.example", "Many hops but fine", "hops@customer.example", hops(DefaultMaxReceived)...))
	d := h.waitDecided("loop@customer.example", 1)
	if d.Outcome != store.OutcomeQuarantined+":loop" || !strings.Contains(d.Signal, "Received") {
		t.Fatalf("looped mail: %s / %s, want quarantined:loop naming the Received count", d.Outcome, d.Signal)
	}
	if d := h.waitDecided("hops@customer.example", 1); d.Outcome != store.OutcomeNewCase {
		t.Fatalf("mail at the limit: %s, want a case", d.Outcome)
	}
	h.waitFolder(supportAddr, "Quarantine", 1)
	h.waitSent(2) // only bob's ack and team mail
}

// Our own notifications coming back into the intake mailbox (a forward
// rule, a team list that includes the support address) are recognised and
// ignored: by their marker header, and by our address when a gateway
// strips the headers.
func TestOwnNotificationsComingBackAreIgnored(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Invoice wrong", "own1@customer.example"))
	sent := h.waitSent(2)
	envs := h.mail.Sent()
	stripHeaders := regexp.MustCompile(`(?m)^(X-Caseintake-Notification|Auto-Submitted):[^\n]*\n`)
	var ids []string
	for i, e := range envs {
		raw := string(e.Data)
		if i == 1 {
			raw = stripHeaders.ReplaceAllString(raw, "")
		}
		id := strings.Trim(sent[i].Header.Get("Message-ID"), "<>")
		ids = append(ids, id)
		h.deliver(supportAddr, raw)
	}
	h.waitFor("both returned notifications decided", func() bool { return h.settled(ids) })
	for _, id := range ids {
		ds, _ := h.store.Trace(id)
		if len(ds) != 1 || ds[0].Outcome != store.OutcomeIgnored+":automated" {
			t.Errorf("returned notification <%s>: %+v, want one ignored:automated", id, ds)
		}
	}
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	h.waitSent(2) // nothing new went out
}
