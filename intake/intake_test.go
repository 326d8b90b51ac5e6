package intake

import (
	"context"
	"fmt"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

func subjectOf(s sent) string {
	v, _ := mimeWordDecode(s.Header.Get("Subject"))
	return v
}

func TestNewCaseIsAcknowledgedAndTeamNotified(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("Alice <alice@customer.example>", "Cannot export invoices", "a1@customer.example", "Cc: Dave <dave@customer.example>"))

	d := h.waitDecided("a1@customer.example", 1)
	if d.Outcome != store.OutcomeNewCase || !strings.Contains(d.Signal, "new request") {
		t.Fatalf("decision = %s / %s", d.Outcome, d.Signal)
	}
	h.waitFolder(supportAddr, "Processed", 1)
	if n := len(h.folder(supportAddr, "INBOX")); n != 0 {
		t.Fatalf("%d message(s) left in INBOX", n)
	}
	c := h.caseByID(d.CaseID)
	if c.Status != casemodel.Open || c.Priority != casemodel.Normal || c.Requester != "alice@customer.example" || c.DueAt == nil {
		t.Fatalf("case = %+v", c)
	}
	if !c.IsParticipant("dave@customer.example") {
		t.Errorf("Cc not a participant: %v", c.Participants)
	}
	got := h.waitSent(2)
	ack, team := got[0], got[1]
	if ack.Header.Get("To") == "" || !slices.Equal(ack.To, []string{"alice@customer.example"}) {
		t.Fatalf("first notification to %v, want the requester", ack.To)
	}
	wantTag := fmt.Sprintf("[Case #%d]", c.ID)
	if s := subjectOf(ack); s != wantTag+" Cannot export invoices" {
		t.Errorf("ack subject = %q", s)
	}
	for k, want := range map[string]string{
		"Auto-Submitted":            "auto-replied",
		"In-Reply-To":               "<a1@customer.example>",
		"X-Caseintake-Notification": "ack",
	} {
		if got := ack.Header.Get(k); got != want {
			t.Errorf("ack %s = %q, want %q", k, got, want)
		}
	}
	if ack.From != "" {
		t.Errorf("ack envelope sender = %q, want the null sender", ack.From)
	}
	if !strings.Contains(ack.Body, fmt.Sprintf("#%d", c.ID)) || !strings.Contains(ack.Body, "normal") {
		t.Errorf("ack body lacks case number or priority:\n%s", ack.Body)
	}
	if !slices.Equal(team.To, []string{teamAddr}) || !strings.HasPrefix(subjectOf(team), wantTag) || team.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("team notification to %v: %q", team.To, subjectOf(team))
	}
	// The ack is on the case's thread, so a reply to it threads back.
	c = h.caseByID(c.ID)
	if len(c.Messages) != 2 || c.Messages[1].Direction != casemodel.Out || "<"+c.Messages[1].MessageID+">" != ack.Header.Get("Message-Id") {
		t.Fatalf("case messages = %+v", c.Messages)
	}
}

func TestSameMessageTwiceMakesOneCase(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	raw := msg("alice@customer.example", "Printer on fire", "dup@customer.example")
	h.deliver(supportAddr, raw)
	h.waitDecided("dup@customer.example", 1)
	h.deliver(supportAddr, raw)
	d := h.waitDecided("dup@customer.example", 2)
	if d.Outcome != store.OutcomeIgnored+":duplicate" {
		t.Fatalf("second copy: %s / %s", d.Outcome, d.Signal)
	}
	h.waitFolder(supportAddr, "Processed", 2)
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	h.waitSent(2) // one ack, one team notice: nothing for the copy
}

func TestSameMessageInTwoMailboxesMakesOneCase(t *testing.T) {
	h := newHarness(t, harnessOpts{mailboxes: []string{supportAddr, salesAddr}})
	raw := msg("alice@customer.example", "Quote and a bug", "both@customer.example", "Cc: "+salesAddr)
	h.deliver(supportAddr, raw)
	h.deliver(salesAddr, raw)
	h.waitDecided("both@customer.example", 2)
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	ds, _ := h.store.Trace("both@customer.example")
	outcomes := []string{ds[0].Outcome, ds[1].Outcome}
	slices.Sort(outcomes)
	if outcomes[0] != store.OutcomeNewCase || outcomes[1] != store.OutcomeIgnored+":duplicate" {
		t.Fatalf("outcomes = %v", outcomes)
	}
	h.waitFolder(supportAddr, "Processed", 1)
	h.waitFolder(salesAddr, "Processed", 1)
	h.waitSent(2)
	c := h.allCases()[0]
	if c.IsParticipant(salesAddr) {
		t.Errorf("our own address became a participant: %v", c.Participants)
	}
}

func TestRepliesThreadByInReplyToAndBySubjectTag(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "VPN drops", "v1@customer.example"))
	c := h.caseByID(h.waitDecided("v1@customer.example", 1).CaseID)
	ack := h.waitSent(2)[0]
	ackID := strings.Trim(ack.Header.Get("Message-Id"), "<>")

	// A client's reply to our acknowledgement: In-Reply-To our Message-ID.
	h.deliver(supportAddr, msg("alice@customer.example", "Re: whatever the client wrote", "v2@customer.example",
		"In-Reply-To: <"+ackID+">", "References: <v1@customer.example> <"+ackID+">"))
	d := h.waitDecided("v2@customer.example", 1)
	if d.Outcome != store.OutcomeAppended || d.CaseID != c.ID || !strings.Contains(d.Signal, "In-Reply-To <"+ackID+">") {
		t.Fatalf("reply by In-Reply-To: %s case #%d / %s", d.Outcome, d.CaseID, d.Signal)
	}
	// A reply that kept only the subject tag.
	h.deliver(supportAddr, msg("alice@customer.example", fmt.Sprintf("AW: [Case #%d] VPN drops", c.ID), "v3@customer.example"))
	d = h.waitDecided("v3@customer.example", 1)
	if d.Outcome != store.OutcomeAppended || d.CaseID != c.ID || d.Signal != fmt.Sprintf("subject tag #%d", c.ID) {
		t.Fatalf("reply by tag: %s case #%d / %s", d.Outcome, d.CaseID, d.Signal)
	}
	// A reply quoting only the customer's own first message.
	h.deliver(supportAddr, msg("alice@customer.example", "Re: VPN drops", "v4@customer.example", "References: <v1@customer.example>"))
	d = h.waitDecided("v4@customer.example", 1)
	if d.CaseID != c.ID || !strings.Contains(d.Signal, "References <v1@customer.example>") {
		t.Fatalf("reply by References: case #%d / %s", d.CaseID, d.Signal)
	}
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	if c = h.caseByID(c.ID); c.Status != casemodel.Open {
		t.Fatalf("status = %s", c.Status)
	}
	h.waitSent(2) // replies to an open case send nothing
}

// setStatus changes a case's status as an agent would.
func (h *harness) setStatus(id uint64, to casemodel.Status) {
	h.t.Helper()
	err := h.store.Update(func(tx *store.Tx) error {
		c, err := tx.Case(id)
		if err != nil {
			return err
		}
		if err := casemodel.CheckAgentTransition(c.Status, to); err != nil {
			return err
		}
		c.SetStatus(to, "agent:test", "", h.clock.Now())
		return tx.PutCase(c)
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

func TestReplyToResolvedCaseReopens(t *testing.T) {
	for _, status := range []casemodel.Status{casemodel.SolutionProvided, casemodel.CustomerPending, casemodel.Closed} {
		t.Run(string(status), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.deliver(supportAddr, msg("alice@customer.example", "Slow reports", "r1@customer.example"))
			c := h.caseByID(h.waitDecided("r1@customer.example", 1).CaseID)
			h.waitSent(2)
			h.setStatus(c.ID, status)
			h.deliver(supportAddr, msg("alice@customer.example", fmt.Sprintf("Re: [Case #%d] Slow reports", c.ID), "r2@customer.example"))
			d := h.waitDecided("r2@customer.example", 1)
			if d.Outcome != store.OutcomeAppended || !strings.Contains(d.Signal, "reopened from "+string(status)) {
				t.Fatalf("decision = %s / %s", d.Outcome, d.Signal)
			}
			c = h.caseByID(c.ID)
			if c.Status != casemodel.Open {
				t.Fatalf("status = %s, want open", c.Status)
			}
			last := c.Events[len(c.Events)-1]
			if last.Kind != "status" || last.From != string(status) || last.To != "open" || last.Actor != "mail" {
				t.Fatalf("event = %+v", last)
			}
			got := h.waitSent(4)
			if !slices.Equal(got[2].To, []string{"alice@customer.example"}) || !strings.Contains(subjectOf(got[2]), "Reopened") {
				t.Errorf("customer notice: %v %q", got[2].To, subjectOf(got[2]))
			}
			if !slices.Equal(got[3].To, []string{teamAddr}) || !strings.Contains(subjectOf(got[3]), "Reopened") {
				t.Errorf("team notice: %v %q", got[3].To, subjectOf(got[3]))
			}
		})
	}
}

func TestReplyToArchivedCaseOpensLinkedCase(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Old issue", "o1@customer.example"))
	old := h.waitDecided("o1@customer.example", 1).CaseID
	h.waitSent(2)
	h.setStatus(old, casemodel.Closed)
	h.clock.Advance(15 * 24 * time.Hour)
	h.deliver(supportAddr, msg("alice@customer.example", fmt.Sprintf("Re: [Case #%d] Old issue", old), "o2@customer.example"))
	d := h.waitDecided("o2@customer.example", 1)
	if d.Outcome != store.OutcomeNewCase || d.CaseID == old || !strings.Contains(d.Signal, "archived") {
		t.Fatalf("decision = %s case #%d / %s", d.Outcome, d.CaseID, d.Signal)
	}
	oldCase, newCase := h.caseByID(old), h.caseByID(d.CaseID)
	if oldCase.Status != casemodel.Archived {
		t.Errorf("old case status = %s, want archived", oldCase.Status)
	}
	if !slices.Contains(oldCase.Links, newCase.ID) || !slices.Contains(newCase.Links, old) {
		t.Errorf("links: old %v, new %v", oldCase.Links, newCase.Links)
	}
	h.waitSent(4) // a new ack and team notice for the linked case
}

func TestProductionDownIsUrgentAndEscalated(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("bob@shop.example", "=?ISO-8859-1?Q?AW:_Produktionsausfall_in_Halle_3?=", "pd@shop.example", "X-Priority: 5", "Importance: low"))
	d := h.waitDecided("pd@shop.example", 1)
	c := h.caseByID(d.CaseID)
	if c.Priority != casemodel.Urgent || !strings.Contains(d.Signal, "Produktionsausfall") {
		t.Fatalf("priority %s, signal %s", c.Priority, d.Signal)
	}
	if want := c.CreatedAt.Add(2 * time.Hour); c.DueAt == nil || !c.DueAt.Equal(want) {
		t.Errorf("due = %v, want %v", c.DueAt, want)
	}
	got := h.waitSent(3)
	urgent := got[0] // the escalation goes out before the rest of the queue
	if !slices.Equal(urgent.To, []string{oncallAddr, "infra@example.test"}) || !strings.Contains(subjectOf(urgent), "URGENT") {
		t.Fatalf("first notice to %v: %q, want the escalation to on-call", urgent.To, subjectOf(urgent))
	}
}

func TestReplyRaisesToUrgentButNeverLowers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("bob@shop.example", "Checkout slow", "u1@shop.example"))
	id := h.waitDecided("u1@shop.example", 1).CaseID
	h.waitSent(2)
	h.deliver(supportAddr, msg("bob@shop.example", fmt.Sprintf("Re: [Case #%d] now PRODUCTION DOWN", id), "u2@shop.example"))
	h.waitDecided("u2@shop.example", 1)
	if c := h.caseByID(id); c.Priority != casemodel.Urgent {
		t.Fatalf("priority = %s", c.Priority)
	}
	// The escalation lists and the team hear of the raise.
	got := h.waitSent(4)
	if !slices.Contains(got[2].To, oncallAddr) || got[2].Header.Get("X-Caseintake-Notification") != "urgent" {
		t.Fatalf("escalation to %v", got[2].To)
	}
	if !slices.Equal(got[3].To, []string{teamAddr}) || !strings.Contains(subjectOf(got[3]), "normal -> urgent") {
		t.Fatalf("team notice to %v: %q", got[3].To, subjectOf(got[3]))
	}
	h.deliver(supportAddr, msg("bob@shop.example", fmt.Sprintf("Re: [Case #%d] fixed, thanks", id), "u3@shop.example", "X-Priority: 5"))
	h.waitDecided("u3@shop.example", 1)
	if c := h.caseByID(id); c.Priority != casemodel.Urgent {
		t.Fatalf("mail lowered the priority to %s", c.Priority)
	}
}

func TestReplyOnAnAssignedCaseTellsTheAssignee(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Slow search", "as1@customer.example"))
	id := h.waitDecided("as1@customer.example", 1).CaseID
	h.waitSent(2)
	err := h.store.Update(func(tx *store.Tx) error {
		c, err := tx.Case(id)
		if err != nil {
			return err
		}
		c.Assign("ann@example.test", "agent:test", h.clock.Now())
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.deliver(supportAddr, msg("alice@customer.example", fmt.Sprintf("Re: [Case #%d] Slow search", id), "as2@customer.example"))
	if d := h.waitDecided("as2@customer.example", 1); d.Outcome != store.OutcomeAppended {
		t.Fatalf("decision %s", d.Outcome)
	}
	got := h.waitSent(3)
	if !slices.Equal(got[2].To, []string{"ann@example.test"}) || got[2].Header.Get("X-Caseintake-Notification") != "assignee_reply" {
		t.Fatalf("assignee notice to %v (%s)", got[2].To, got[2].Header.Get("X-Caseintake-Notification"))
	}
}

func TestOutOfOfficeGetsNoAckAndDoesNotReopen(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Invoice question", "q1@customer.example"))
	id := h.waitDecided("q1@customer.example", 1).CaseID
	ack := h.waitSent(2)[0]
	h.setStatus(id, casemodel.SolutionProvided)
	h.deliver(supportAddr, msg("alice@customer.example", "Automatic reply: [Case #"+fmt.Sprint(id)+"] Invoice question", "ooo@customer.example",
		"Auto-Submitted: auto-replied", "In-Reply-To: "+ack.Header.Get("Message-Id")))
	d := h.waitDecided("ooo@customer.example", 1)
	if d.Outcome != store.OutcomeIgnored+":automated" || !strings.Contains(d.Signal, "Auto-Submitted") || d.CaseID != id {
		t.Fatalf("decision = %s case #%d / %s", d.Outcome, d.CaseID, d.Signal)
	}
	if c := h.caseByID(id); c.Status != casemodel.SolutionProvided {
		t.Fatalf("status = %s: an auto-reply reopened the case", c.Status)
	}
	h.deliver(supportAddr, msg("alice@customer.example", "Out of Office", "ooo2@customer.example", "Auto-Submitted: auto-replied"))
	d = h.waitDecided("ooo2@customer.example", 1)
	if d.Outcome != store.OutcomeIgnored+":automated" {
		t.Fatalf("decision = %s", d.Outcome)
	}
	h.waitFolder(supportAddr, "Processed", 3)
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases", n)
	}
	h.waitSent(2)
}

func TestStrangerWithValidTagDoesNotReachTheCase(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Secret project", "s1@customer.example"))
	id := h.waitDecided("s1@customer.example", 1).CaseID
	h.deliver(supportAddr, msg("mallory@evil.example", fmt.Sprintf("Re: [Case #%d] Secret project", id), "s2@evil.example"))
	d := h.waitDecided("s2@evil.example", 1)
	if d.Outcome != store.OutcomeNewCase || d.CaseID == id || !strings.Contains(d.Signal, "not a participant") {
		t.Fatalf("decision = %s case #%d / %s", d.Outcome, d.CaseID, d.Signal)
	}
	if c := h.caseByID(id); len(c.Messages) != 2 { // request + ack
		t.Fatalf("stranger's mail reached case #%d: %d messages", id, len(c.Messages))
	}
}

func TestOversizeAndUnparseableAreQuarantinedAndWorkGoesOn(t *testing.T) {
	h := newHarness(t, harnessOpts{maxSize: 4096})
	big := msg("alice@customer.example", "Huge log", "big@customer.example") + strings.Repeat("x", 8000) + "\r\n"
	// MIME nested deeper than the parser's limit: nothing usable can be read.
	var broken strings.Builder
	broken.WriteString("From: alice@customer.example\r\nSubject: broken\r\nMessage-ID: <broken@customer.example>\r\nMIME-Version: 1.0\r\n")
	for i := range 40 {
		fmt.Fprintf(&broken, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	broken.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	h.deliver(supportAddr, big)
	h.deliver(supportAddr, broken.String())
	h.deliver(supportAddr, msg("alice@customer.example", "After the bad ones", "ok@customer.example"))

	if d := h.waitDecided("big@customer.example", 1); d.Outcome != store.OutcomeQuarantined+":too-large" || d.RawRef != "" {
		t.Fatalf("oversize: %s raw=%q", d.Outcome, d.RawRef)
	}
	d := h.waitDecided("broken@customer.example", 1)
	if !strings.HasPrefix(d.Outcome, store.OutcomeQuarantined+":") || d.RawRef == "" {
		t.Fatalf("unparseable: %s / %s raw=%q", d.Outcome, d.Signal, d.RawRef)
	}
	f, err := h.store.OpenRaw(d.RawRef)
	if err != nil {
		t.Fatalf("raw bytes of the quarantined message: %v", err)
	}
	f.Close()
	if d := h.waitDecided("ok@customer.example", 1); d.Outcome != store.OutcomeNewCase {
		t.Fatalf("the worker did not go on: %s", d.Outcome)
	}
	q := h.waitFolder(supportAddr, "Quarantine", 2)
	if !strings.Contains(q[0]+q[1], "Huge log") || !strings.Contains(q[0]+q[1], "broken") {
		t.Fatal("quarantine folder lacks the messages")
	}
	h.waitFolder(supportAddr, "Processed", 1)
}

// TestCommittedButUnacknowledgedIsNotAppliedTwice is the crash between
// commit and acknowledgement: the message was committed (its Handle ran)
// but never moved, so the next start fetches it again.
func TestCommittedButUnacknowledgedIsNotAppliedTwice(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	raw := msg("alice@customer.example", "Crash test", "crash@customer.example")
	h.deliver(supportAddr, raw)
	msgs, err := h.mail.Messages(supportAddr, "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX: %v %v", msgs, err)
	}
	disp := h.pipeline.Handle(context.Background(), &mailbox.Incoming{
		Mailbox: "support", UIDValidity: h.uidValidity(), UID: msgs[0].UID, MessageID: "crash@customer.example",
		Size: int64(len(raw)), InternalDate: msgs[0].InternalDate, Body: strings.NewReader(raw),
	})
	if disp.Action != mailbox.Ack {
		t.Fatalf("disposition = %+v", disp)
	}
	h.waitSent(2) // the ack left before the "crash"
	// Restart: a worker finds the message still in INBOX.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.startWorker(ctx, h.cfgs["support"], h.pipeline.log)
	h.waitFolder(supportAddr, "Processed", 1)
	if ds, _ := h.store.Trace("crash@customer.example"); len(ds) != 1 {
		t.Fatalf("%d decisions, want the original one only", len(ds))
	}
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases", n)
	}
	h.waitSent(2)
}

func (h *harness) uidValidity() uint32 {
	h.t.Helper()
	c, err := imapclient.DialInsecure(fmt.Sprintf("%s:%d", h.mail.IMAPHost, h.mail.IMAPPort), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(supportAddr, password).Wait(); err != nil {
		h.t.Fatal(err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		h.t.Fatal(err)
	}
	return st.UIDValidity
}

func TestForgedOwnMessageIDThreadsNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Payroll export", "p1@customer.example"))
	id := h.waitDecided("p1@customer.example", 1).CaseID
	ackID := strings.Trim(h.waitSent(2)[0].Header.Get("Message-Id"), "<>")
	local, domain, _ := strings.Cut(ackID, "@")
	last := "a"
	if strings.HasSuffix(local, "a") {
		last = "b"
	}
	flipped := local[:len(local)-1] + last
	for i, forged := range []string{
		flipped + "@" + domain,                            // our ID with one character of the token changed
		fmt.Sprintf("caseintake.%d.1.ack@%s", id, domain), // the scheme guessed without a token
	} {
		mid := fmt.Sprintf("f%d@evil.example", i)
		h.deliver(supportAddr, msg("mallory@evil.example", "Re: Payroll export", mid,
			"In-Reply-To: <"+forged+">", "References: <"+forged+">"))
		d := h.waitDecided(mid, 1)
		if d.Outcome != store.OutcomeNewCase || d.CaseID == id || !strings.Contains(d.Signal, "<"+forged+"> looks like ours but its token does not verify") {
			t.Fatalf("In-Reply-To <%s>: %s case #%d / %s", forged, d.Outcome, d.CaseID, d.Signal)
		}
	}
	if c := h.caseByID(id); len(c.Messages) != 2 { // request + ack
		t.Fatalf("forged mail reached case #%d: %d messages", id, len(c.Messages))
	}
}
