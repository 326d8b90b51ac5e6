package intake

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

// runWorker runs a mailbox worker for cfg until the returned stop is called.
func (h *harness) runWorker(cfg config.Mailbox) (w *mailbox.Worker, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w = mailbox.NewWorker(cfg, h.pipeline, Cursors(h.store), h.pipeline.log)
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.t.Fatalf("mailbox worker %s did not stop within 10 s", cfg.Name)
		}
	}
	h.t.Cleanup(stop)
	return w, stop
}

// A connection cut in the middle of the message body must not turn the
// half message into a case: the cut fetch is retried and the case is made
// from the whole message, once.
func TestFetchCutMidBodyMakesNoTruncatedCase(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	p, err := devmail.StartFaultProxy(h.mail.IMAPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := h.cfgs["support"]
	cfg.IMAP.Host, cfg.IMAP.Port = p.Host, p.Port

	raw := strings.Replace(msg("alice@customer.example", "Big log attached", "cut@customer.example"),
		"Hello, please help.", strings.Repeat("log line 0123456789\r\n", 4000)+"END OF LOG", 1)
	h.deliver(supportAddr, raw)
	p.Arm(devmail.DropMidFetch, 1)
	h.runWorker(cfg)

	h.waitFolder(supportAddr, "Processed", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitInjected(ctx, devmail.DropMidFetch, 1); err != nil {
		t.Fatal(err)
	}
	ds, err := h.store.Trace("cut@customer.example")
	if err != nil || len(ds) != 1 {
		t.Fatalf("%d decisions (%v), want 1", len(ds), err)
	}
	if ds[0].Size != int64(len(raw)) {
		t.Fatalf("stored %d bytes of a %d-byte message: the cut body was committed", ds[0].Size, len(raw))
	}
	raws, err := h.store.OpenRaw(ds[0].RawRef)
	if err != nil {
		t.Fatal(err)
	}
	raws.Close()
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	h.waitSent(2) // one ack, one team notification
}

// UIDVALIDITY changes between polls (the folder was recreated and the mail
// restored into it): the stored UIDs are void, every message is read
// again, and the ones already decided are recognised by Message-ID, or by
// content hash when they have none: no second case, no second ack.
func TestUIDValidityChangeMakesNoDuplicateCaseOrAck(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	if err := h.mail.CreateFolder(supportAddr, "Support"); err != nil {
		t.Fatal(err)
	}
	cfg := h.cfgs["support"]
	cfg.Folder = "Support"
	withID := msg("alice@customer.example", "Export broken", "uv1@customer.example")
	withoutID := msg("bob@customer.example", "No Message-ID here", "")
	for _, raw := range []string{withID, withoutID} {
		if _, err := h.mail.Deliver(supportAddr, "Support", []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	_, stop := h.runWorker(cfg)
	h.waitFolder(supportAddr, "Processed", 2)
	h.waitSent(4)
	stop()
	before, err := Cursors(h.store).LoadCursor("support")
	if err != nil {
		t.Fatal(err)
	}

	if err := h.mail.DeleteFolder(supportAddr, "Support"); err != nil {
		t.Fatal(err)
	}
	if err := h.mail.CreateFolder(supportAddr, "Support"); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{withID, withoutID} {
		if _, err := h.mail.Deliver(supportAddr, "Support", []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	h.runWorker(cfg)
	h.waitFolder(supportAddr, "Processed", 4)
	// The worker saves its cursor after acknowledging: wait for it, or the
	// check below races the save.
	h.waitFor("the cursor to take the new UIDVALIDITY", func() bool {
		after, err := Cursors(h.store).LoadCursor("support")
		return err == nil && after.UIDValidity != before.UIDValidity
	})
	if ds, _ := h.store.Trace("uv1@customer.example"); len(ds) != 2 || ds[1].Outcome != store.OutcomeIgnored+":duplicate" {
		t.Fatalf("decisions about <uv1@customer.example>: %+v, want the case and then ignored:duplicate", ds)
	}
	if n := len(h.allCases()); n != 2 {
		t.Fatalf("%d cases, want 2", n)
	}
	h.waitSent(4) // still exactly the first two acks and team mails
}

// One mailbox failing (its server refuses the login) does not stop the
// others.
func TestOtherMailboxesKeepWorkingWhileOneFails(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true, mailboxes: []string{supportAddr, salesAddr}})
	bad := h.cfgs["sales"]
	bad.IMAP.Password = "wrong"
	badW, _ := h.runWorker(bad)
	h.runWorker(h.cfgs["support"])

	h.deliver(salesAddr, msg("carol@customer.example", "Quote please", "sales1@customer.example"))
	h.deliver(supportAddr, msg("alice@customer.example", "Printer on fire", "sup1@customer.example"))
	if d := h.waitDecided("sup1@customer.example", 1); d.Outcome != store.OutcomeNewCase {
		t.Fatalf("support mail: %s, want a new case", d.Outcome)
	}
	h.waitFolder(supportAddr, "Processed", 1)
	h.waitFor("the sales worker to report its login failure", func() bool {
		return strings.Contains(badW.Status().LastError, "login")
	})
	if n := len(h.folder(salesAddr, "INBOX")); n != 1 {
		t.Fatalf("sales INBOX holds %d messages, want the 1 it cannot read yet", n)
	}
}
