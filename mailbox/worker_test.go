package mailbox

import (
	"context"
	"errors"
	"fmt"
	"github.com/caseintake/caseintake/config"
	"io"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/caseintake/caseintake/devmail"
)

var (
	capsMove    = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}}
	capsNoMove  = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}
	capsMinimal = imap.CapSet{imap.CapIMAP4rev1: {}}
)

func disposeBy(m map[uint32]Action) func(context.Context, *Incoming, int) Disposition {
	return func(_ context.Context, in *Incoming, _ int) Disposition {
		a, ok := m[in.UID]
		if !ok {
			a = Ack
		}
		return Disposition{Action: a, Reason: "scripted " + a.String()}
	}
}

func TestHandsOverInUIDOrderAndAcks(t *testing.T) {
	for name, caps := range map[string]imap.CapSet{"move": capsMove, "no-move": capsNoMove} {
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, devmail.Options{Caps: caps})
			raws := []string{
				testMessage(1, "kurz"),
				testMessage(2, strings.Repeat("eine lange Zeile mit Umlauten äöü\r\n", 4000)), // ~150 KB, streamed
				testMessage(3, ".leading dot and trailing spaces   "),
			}
			for _, r := range raws {
				deliver(t, srv, "INBOX", r)
			}
			h := newHandler(nil)
			cs := newCursors()
			startWorker(t, mailboxConfig(srv), h, cs)

			cur := cs.waitLastUID(t, "support", 3)
			calls := h.waitCalls(t, 3)
			if len(calls) != 3 {
				t.Fatalf("%d calls", len(calls))
			}
			for i, g := range calls {
				if g.in.UID != uint32(i+1) || string(g.body) != raws[i] || g.in.Oversize ||
					g.in.Size != int64(len(raws[i])) || g.in.Mailbox != "support" ||
					g.in.UIDValidity != cur.UIDValidity || g.in.UIDValidity == 0 ||
					g.in.MessageID != "" || g.in.InternalDate.IsZero() { // no ENVELOPE for a message downloaded

					t.Errorf("call %d: %+v (body %d bytes)", i, g.in, len(g.body))
				}
			}
			if inbox := messages(t, srv, "INBOX"); len(inbox) != 0 {
				t.Fatalf("INBOX still has %v", uidsOf(inbox))
			}
			done := messages(t, srv, "Processed")
			if len(done) != 3 {
				t.Fatalf("Processed has %v", uidsOf(done))
			}
			for i, m := range done {
				if string(m.Raw) != raws[i] {
					t.Errorf("Processed message %d differs", i)
				}
				if hasFlag(m, imap.FlagSeen) {
					t.Errorf("Processed message %d is \\Seen: fetched without PEEK", i)
				}
			}
			if q := messages(t, srv, "Quarantine"); len(q) != 0 {
				t.Fatalf("Quarantine has %v", uidsOf(q))
			}
		})
	}
}

// Without MOVE and UIDPLUS the message is copied and flagged \Deleted but
// not expunged, and it is not handed over again.
func TestAckWithoutMoveOrUIDPlus(t *testing.T) {
	srv := startServer(t, devmail.Options{Caps: capsMinimal})
	deliver(t, srv, "INBOX", testMessage(1, "x"))
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, mailboxConfig(srv), h, cs)
	cs.waitLastUID(t, "support", 1)
	r.waitEvent(t, "cycle", 1)

	if p := messages(t, srv, "Processed"); len(p) != 1 {
		t.Fatalf("Processed has %v", uidsOf(p))
	}
	inbox := messages(t, srv, "INBOX")
	if len(inbox) != 1 || !hasFlag(inbox[0], imap.FlagDeleted) {
		t.Fatalf("INBOX = %+v", inbox)
	}
	// Even with the cursor reset, a \Deleted message is not offered again.
	cs.SaveCursor("support", Cursor{})
	n := r.count("cycle")
	r.w.Kick()
	r.waitEvent(t, "cycle", n+1)
	if c := h.numCalls(); c != 1 {
		t.Fatalf("handler called %d times", c)
	}
}

func TestQuarantine(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "bad"))
	deliver(t, srv, "INBOX", testMessage(2, "good"))
	h := newHandler(disposeBy(map[uint32]Action{1: Quarantine}))
	cs := newCursors()
	startWorker(t, mailboxConfig(srv), h, cs)
	cs.waitLastUID(t, "support", 2)

	q := messages(t, srv, "Quarantine")
	if len(q) != 1 || string(q[0].Raw) != testMessage(1, "bad") {
		t.Fatalf("Quarantine = %v", uidsOf(q))
	}
	if p := messages(t, srv, "Processed"); len(p) != 1 || string(p[0].Raw) != testMessage(2, "good") {
		t.Fatalf("Processed = %v", uidsOf(p))
	}
	if inbox := messages(t, srv, "INBOX"); len(inbox) != 0 {
		t.Fatalf("INBOX = %v", uidsOf(inbox))
	}
}

func TestRetryHoldsCursorAndWaitsForNextCycle(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 3; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	h := newHandler(func(_ context.Context, in *Incoming, n int) Disposition {
		if in.UID == 2 && n == 1 {
			return Disposition{Action: Retry, Reason: "database busy"}
		}
		return Disposition{Action: Ack}
	})
	cs := newCursors()
	r := startWorker(t, mailboxConfig(srv), h, cs)

	r.waitEvent(t, "cycle", 1)
	calls := h.waitCalls(t, 3)
	if got := []uint32{calls[0].in.UID, calls[1].in.UID, calls[2].in.UID}; !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("handled %v", got)
	}
	if got := uidsOf(messages(t, srv, "INBOX")); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("INBOX = %v", got)
	}
	if cur := cs.get("support"); cur.LastUID != 1 {
		t.Fatalf("cursor = %+v, want last UID 1 (held below the retried message)", cur)
	}
	// No tight loop: nothing happens until the next wake-up (the poll
	// interval is an hour). This is an assertion window, not a sync point.
	time.Sleep(200 * time.Millisecond)
	if n, c := h.numCalls(), r.count("cycle"); n != 3 || c != 1 {
		t.Fatalf("after the retry: %d handler calls, %d cycles", n, c)
	}

	r.w.Kick()
	cs.waitLastUID(t, "support", 2)
	calls = h.waitCalls(t, 4)
	if calls[3].in.UID != 2 {
		t.Fatalf("4th call for UID %d", calls[3].in.UID)
	}
	if inbox := messages(t, srv, "INBOX"); len(inbox) != 0 {
		t.Fatalf("INBOX = %v", uidsOf(inbox))
	}
}

// A message over max_message_size is not downloaded: the handler gets its
// size and ENVELOPE's Message-ID, which is fetched for it alone (the
// metadata of a batch asks for no ENVELOPE: the server would open every
// message for it).
func TestOversizeNotDownloaded(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	p, cfg := startProxy(t, srv)
	var mu sync.Mutex
	var envelopes []string
	p.OnCommand = func(_ int, line string) {
		if strings.Contains(strings.ToUpper(line), "ENVELOPE") {
			mu.Lock()
			envelopes = append(envelopes, line)
			mu.Unlock()
		}
	}
	big := testMessage(1, strings.Repeat("x", 5000))
	small := testMessage(2, "small")
	deliver(t, srv, "INBOX", big)
	deliver(t, srv, "INBOX", small)
	h := newHandler(func(_ context.Context, in *Incoming, _ int) Disposition {
		if in.Oversize {
			return Disposition{Action: Quarantine, Reason: "too large"}
		}
		return Disposition{Action: Ack}
	})
	cs := newCursors()
	cfg.MaxMessageSize = 1000
	startWorker(t, cfg, h, cs)
	cs.waitLastUID(t, "support", 2)
	mu.Lock()
	if len(envelopes) != 1 || !strings.Contains(envelopes[0], "FETCH 1 ") {
		t.Errorf("ENVELOPE asked for in %q, want one FETCH of UID 1 only", envelopes)
	}
	mu.Unlock()

	calls := h.waitCalls(t, 2)
	if g := calls[0]; !g.in.Oversize || g.in.Body != nil || g.body != nil || g.in.Size != int64(len(big)) || g.in.MessageID != "m1@customer.example" {
		t.Fatalf("oversize call: %+v", g.in)
	}
	if g := calls[1]; g.in.Oversize || string(g.body) != small {
		t.Fatalf("small call: %+v", g.in)
	}
	q := messages(t, srv, "Quarantine")
	if len(q) != 1 || string(q[0].Raw) != big || hasFlag(q[0], imap.FlagSeen) {
		t.Fatalf("Quarantine = %+v", q)
	}
}

func TestCursorPersistedAndUIDValidityReset(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	cs := newCursors()
	cfg := mailboxConfig(srv)

	// First run: two messages, cursor saved.
	deliver(t, srv, "INBOX", testMessage(1, "a"))
	deliver(t, srv, "INBOX", testMessage(2, "b"))
	r := startWorker(t, cfg, newHandler(nil), cs)
	v1 := cs.waitLastUID(t, "support", 2).UIDValidity
	r.stop(t)

	// Second run starts from the stored cursor: UID 3 counts as done
	// (as if a crash hit between commit and ack), so only 4 is offered.
	deliver(t, srv, "INBOX", testMessage(3, "c"))
	deliver(t, srv, "INBOX", testMessage(4, "d"))
	cs.SaveCursor("support", Cursor{UIDValidity: v1, LastUID: 3})
	h := newHandler(nil)
	r = startWorker(t, cfg, h, cs)
	cs.waitLastUID(t, "support", 4)
	if calls := h.waitCalls(t, 1); len(calls) != 1 || calls[0].in.UID != 4 {
		t.Fatalf("second run handled %+v", calls)
	}
	r.stop(t)

	// The folder is recreated: new UIDVALIDITY, UIDs start at 1 again.
	if err := srv.DeleteFolder(testUser, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateFolder(testUser, "INBOX"); err != nil {
		t.Fatal(err)
	}
	deliver(t, srv, "INBOX", testMessage(5, "e"))
	h = newHandler(nil)
	r = startWorker(t, cfg, h, cs)
	cur := cs.waitLastUID(t, "support", 1)
	if cur.UIDValidity == v1 {
		t.Fatal("UIDVALIDITY not updated")
	}
	if calls := h.waitCalls(t, 1); calls[0].in.UID != 1 || calls[0].in.UIDValidity != cur.UIDValidity {
		t.Fatalf("after reset handled %+v", calls[0].in)
	}

	// And again while the worker runs: a Kick finds the new folder.
	r.waitEvent(t, "cycle", 1)
	if err := srv.DeleteFolder(testUser, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateFolder(testUser, "INBOX"); err != nil {
		t.Fatal(err)
	}
	deliver(t, srv, "INBOX", testMessage(6, "f"))
	r.w.Kick()
	calls := h.waitCalls(t, 2)
	if calls[1].in.UID != 1 || calls[1].in.UIDValidity == cur.UIDValidity || string(calls[1].body) != testMessage(6, "f") {
		t.Fatalf("after second reset handled %+v", calls[1].in)
	}
	cs.until(t, "cursor on the third UIDVALIDITY", func() bool {
		c := cs.m["support"]
		return c.UIDValidity == calls[1].in.UIDValidity && c.LastUID == 1
	})
}

func TestIdleWakesWorker(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	h := newHandler(nil)
	r := startWorker(t, mailboxConfig(srv), h, newCursors()) // poll interval: 1 h
	r.waitEvent(t, "cycle", 1)

	// Mail arrives over SMTP, as in production: devmail delivers it to INBOX.
	raw := testMessage(1, "urgent")
	c, err := smtp.Dial(srv.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("k1@customer.example", []string{testUser}, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	began := time.Now()
	calls := h.waitCalls(t, 1)
	if string(calls[0].body) != raw {
		t.Fatalf("body %q", calls[0].body)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("IDLE took %v", d)
	}
}

func TestKickWithoutIdle(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	cfg := mailboxConfig(srv)
	cfg.Idle = false
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, cfg, h, cs)
	r.waitEvent(t, "cycle", 1)
	deliver(t, srv, "INBOX", testMessage(1, "x"))
	r.w.Kick()
	cs.waitLastUID(t, "support", 1)
	if st := r.w.Status(); !st.Connected || st.LastPoll.IsZero() || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, mailboxConfig(srv), h, cs)
	r.waitEvent(t, "cycle", 1)

	if err := srv.RestartIMAP(); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(t, "disconnected", 1)
	deliver(t, srv, "INBOX", testMessage(1, "after restart"))
	r.waitEvent(t, "connected", 2)
	cs.waitLastUID(t, "support", 1)
	if st := r.w.Status(); !st.Connected || st.Reconnects < 1 || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
}

func TestReconnectAfterOutage(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, mailboxConfig(srv), h, cs)
	r.waitEvent(t, "cycle", 1)

	if err := srv.SetIMAPDown(true); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(t, "disconnected", 3) // the drop, then refused reconnects
	if st := r.w.Status(); st.Connected || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("status while down: %+v", st)
	}
	deliver(t, srv, "INBOX", testMessage(1, "during outage"))
	if err := srv.SetIMAPDown(false); err != nil {
		t.Fatal(err)
	}
	r.w.Kick() // cut the backoff short
	cs.waitLastUID(t, "support", 1)
	if st := r.w.Status(); !st.Connected || st.Reconnects != 1 {
		t.Fatalf("status after outage: %+v", st)
	}
}

// A server that stops answering is given up on at the step deadline.
func TestSilentServerHitsDeadline(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	proxy := startFreezer(t, srv.IMAPAddr())
	cfg := mailboxConfig(srv)
	cfg.IMAP.Port = proxy.port()
	cfg.PollInterval = 50 * time.Millisecond // IDLE ends (DONE) every 50 ms
	h := newHandler(nil)
	cs := newCursors()
	r := newWorker(t, cfg, h, cs)
	r.w.stepTimeout = 300 * time.Millisecond
	r.start(t)
	r.waitEvent(t, "cycle", 1)

	proxy.setFrozen(true)
	r.waitEvent(t, "disconnected", 1)
	if st := r.w.Status(); !strings.Contains(st.LastError, "did not answer") {
		t.Fatalf("status %+v", st)
	}
	proxy.setFrozen(false)
	deliver(t, srv, "INBOX", testMessage(1, "x"))
	cs.waitLastUID(t, "support", 1)
}

func TestStopWhileIdlingIsPrompt(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	r := startWorker(t, mailboxConfig(srv), newHandler(nil), newCursors())
	r.waitEvent(t, "cycle", 1)
	if d := r.stop(t); d > 2*time.Second {
		t.Fatalf("Run took %v to return", d)
	}
}

func TestStopWhileDisconnectedIsPrompt(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	if err := srv.SetIMAPDown(true); err != nil {
		t.Fatal(err)
	}
	r := newWorker(t, mailboxConfig(srv), newHandler(nil), newCursors())
	r.w.backoffMin = time.Hour
	r.start(t)
	r.waitEvent(t, "disconnected", 1)
	if d := r.stop(t); d > 2*time.Second {
		t.Fatalf("Run took %v to return", d)
	}
}

// Cancelled with a message in hand, the worker finishes it (handler and
// ack) and starts no other.
func TestStopFinishesMessageInHand(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "in hand"))
	deliver(t, srv, "INBOX", testMessage(2, "not started"))
	inHand := make(chan struct{})
	release := make(chan struct{})
	h := newHandler(func(ctx context.Context, in *Incoming, _ int) Disposition {
		if in.UID == 1 {
			close(inHand)
			<-release
		}
		return Disposition{Action: Ack}
	})
	cs := newCursors()
	r := startWorker(t, mailboxConfig(srv), h, cs)

	select {
	case <-inHand:
	case <-time.After(waitFor):
		t.Fatal("handler not called")
	}
	r.cancel()
	close(release)
	r.stop(t)

	calls := h.waitCalls(t, 1)
	if len(calls) != 1 || calls[0].ctxErr != nil {
		t.Fatalf("calls %d, handler ctx: %v", len(calls), calls[0].ctxErr)
	}
	if got := uidsOf(messages(t, srv, "Processed")); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("Processed = %v", got)
	}
	if got := uidsOf(messages(t, srv, "INBOX")); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("INBOX = %v", got)
	}
	if cur := cs.get("support"); cur.LastUID != 1 {
		t.Fatalf("cursor %+v", cur)
	}
}

// A handler that does not finish within the stop grace period sees its
// context end, and Run still returns.
func TestStopGraceBoundsHandler(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "slow"))
	inHand := make(chan struct{})
	h := newHandler(func(ctx context.Context, in *Incoming, _ int) Disposition {
		close(inHand)
		<-ctx.Done()
		return Disposition{Action: Retry, Reason: context.Cause(ctx).Error()}
	})
	r := newWorker(t, mailboxConfig(srv), h, newCursors())
	r.w.stopGrace = 100 * time.Millisecond
	r.start(t)
	<-inHand
	if d := r.stop(t); d > 2*time.Second {
		t.Fatalf("Run took %v", d)
	}
	if calls := h.waitCalls(t, 1); !errors.Is(calls[0].ctxErr, context.Canceled) {
		t.Fatalf("handler ctx: %v", calls[0].ctxErr)
	}
	if got := uidsOf(messages(t, srv, "INBOX")); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("INBOX = %v", got)
	}
}

func TestHandlerPanicQuarantines(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "boom"))
	deliver(t, srv, "INBOX", testMessage(2, "fine"))
	h := newHandler(func(_ context.Context, in *Incoming, _ int) Disposition {
		if in.UID == 1 {
			panic("nil map in classifier")
		}
		return Disposition{Action: Ack}
	})
	cs := newCursors()
	startWorker(t, mailboxConfig(srv), h, cs)
	cs.waitLastUID(t, "support", 2)
	if got := uidsOf(messages(t, srv, "Quarantine")); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("Quarantine = %v", got)
	}
	if got := uidsOf(messages(t, srv, "Processed")); !slices.Equal(got, []uint32{1}) { // UIDs of the destination folder
		t.Fatalf("Processed = %v", got)
	}
	if p := messages(t, srv, "Processed"); string(p[0].Raw) != testMessage(2, "fine") {
		t.Fatal("wrong message processed")
	}
}

// A message expunged by someone else between SEARCH and FETCH is skipped.
func TestVanishedMessageSkipped(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 3)
	var once sync.Once
	p.OnCommand = func(_ int, line string) {
		if strings.Contains(line, "BODY.PEEK[]") { // another client expunges UID 2 after our SEARCH
			once.Do(func() {
				if err := srv.Remove(testUser, "INBOX", 2); err != nil {
					panic(err)
				}
			})
		}
	}
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, cfg, h, cs)
	cs.waitLastUID(t, "support", 3)
	calls := h.waitCalls(t, 2)
	if len(calls) != 2 || calls[0].in.UID != 1 || calls[1].in.UID != 3 {
		t.Fatalf("handled %d calls: %+v", len(calls), calls)
	}
	if n := r.log.count(t, "INFO", "message vanished before it could be fetched"); n != 1 {
		t.Errorf("%d notes about the vanished message, want 1", n)
	}
}

// A full batch is followed at once by the next, retries included only on
// the next real cycle.
func TestBatches(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 5; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	h := newHandler(func(_ context.Context, in *Incoming, n int) Disposition {
		if in.UID == 1 && n == 1 {
			return Disposition{Action: Retry}
		}
		return Disposition{Action: Ack}
	})
	cs := newCursors()
	r := newWorker(t, mailboxConfig(srv), h, cs)
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 3) // [1 2] [3 4] [5], back to back
	calls := h.waitCalls(t, 5)
	var got []uint32
	for _, c := range calls {
		got = append(got, c.in.UID)
	}
	if !slices.Equal(got, []uint32{1, 2, 3, 4, 5}) {
		t.Fatalf("handled %v", got)
	}
	if got := uidsOf(messages(t, srv, "INBOX")); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("INBOX = %v", got)
	}
	r.w.Kick()
	cs.waitLastUID(t, "support", 1)
}

// A backlog saves its cursor once, when the cycle that drains it ends:
// a save is an fsync'd transaction, and one per batch held up the next
// batch's download.
func TestBacklogSavesCursorOncePerCycle(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 5; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	cs := newCursors()
	r := newWorker(t, mailboxConfig(srv), newHandler(nil), cs)
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 3) // [1 2] [3 4] [5], back to back
	cs.waitLastUID(t, "support", 5)
	saves := cs.saved()
	if len(saves) != 1 || saves[0].LastUID != 5 {
		t.Fatalf("cursor saves %+v, want one, at UID 5", saves)
	}
}

// A backlog's cycle selects and searches the folder once, and fetches
// the metadata a batch at a time: a SELECT a batch cost Dovecot a re-read
// of the folder each time, a search a batch held up the download, and the
// metadata of ten batches held up the first one's.
func TestBacklogSelectsAndSearchesOncePerCycle(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 5)
	scans := countScans(p)
	r := newWorker(t, cfg, newHandler(nil), newCursors())
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 3) // [1 2] [3 4] [5]
	if got := uidsOf(messages(t, srv, "Processed")); !slices.Equal(got, []uint32{1, 2, 3, 4, 5}) {
		t.Fatalf("Processed = %v", got)
	}
	if s, q := scans.selects.Load(), scans.searches.Load(); s != 1 || q != 1 {
		t.Fatalf("first connection: %d SELECTs and %d searches for 3 batches, want 1 of each", s, q)
	}
	if m := scans.metaSets(); !slices.Equal(m, []string{"1:2", "3:4", "5"}) {
		t.Fatalf("metadata fetched for UIDs %q, want each batch's (1:2, 3:4, 5)", m)
	}
}

// A backlog longer than one search looks ahead to is searched again where
// the look-ahead ends, within the cycle, and every message is handled in
// order, a batch at a time.
func TestBacklogBeyondTheLookaheadSearchesAgain(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	const n = 2*lookaheadBatches + 5 // batches of two: 10 batches looked ahead, then 3
	for i := 1; i <= n; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	p, cfg := startProxy(t, srv)
	scans := countScans(p)
	h := &batchHandler{inbox: func() []uint32 { return nil }}
	r := newBatchWorker(t, cfg, h, newCursors())
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", lookaheadBatches+3)
	var want []uint32
	for i := 1; i <= n; i++ {
		want = append(want, uint32(i))
	}
	if got := uidsOf(messages(t, srv, "Processed")); !slices.Equal(got, want) {
		t.Fatalf("Processed = %v, want %v", got, want)
	}
	h.mu.Lock()
	commits := h.commits
	h.mu.Unlock()
	for i, b := range commits {
		if len(b) == 0 || len(b) > 2 || (i > 0 && b[0] <= commits[i-1][len(commits[i-1])-1]) {
			t.Fatalf("committed batches %v: want at most two UIDs each, in ascending order", commits)
		}
	}
	if s, q := scans.selects.Load(), scans.searches.Load(); s != 1 || q != 2 {
		t.Fatalf("first connection: %d SELECTs and %d searches for %d messages, want 1 and 2", s, q, n)
	}
	// A batch at a time, across the two searches.
	var sets []string
	for i := 1; i < n; i += 2 {
		sets = append(sets, fmt.Sprintf("%d:%d", i, i+1))
	}
	sets = append(sets, fmt.Sprint(n))
	if m := scans.metaSets(); !slices.Equal(m, sets) {
		t.Fatalf("metadata fetched for UIDs %q, want %q", m, sets)
	}
}

// The next batch's metadata is asked for right behind a batch's body
// FETCH, so that the server answers it while the bodies are still read
// and the next download does not wait for it: fetched when the next batch
// was taken, it held Dovecot's first connection 90–165 ms twice in a
// drain on the bench.
func TestBacklogAsksForTheNextBatchsMetadataBehindTheDownload(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	nextMetaSent := make(chan struct{})
	var once sync.Once
	p.OnCommand = func(conn int, line string) {
		cmd := strings.ToUpper(line)
		if conn == 1 && strings.Contains(cmd, " UID FETCH 3:4 ") && strings.Contains(cmd, "RFC822.SIZE") {
			once.Do(func() { close(nextMetaSent) })
		}
	}
	var stages atomic.Int32
	var heldUntilSent atomic.Bool
	h := &stageHook{batchHandler: &batchHandler{inbox: func() []uint32 { return nil }}, stage: func(in *Incoming) {
		if stages.Add(1) == 1 {
			// The first body is read only once the metadata of [3 4] has
			// been asked for.
			heldUntilSent.Store(arrives(nextMetaSent))
		}
	}}
	drainWith(t, srv, cfg, h, newCursors(), 6)
	if !heldUntilSent.Load() {
		t.Errorf("the metadata of the second batch was not asked for while the first batch's bodies were read")
	}
}

// stageHook is batchHandler with a hook called before each message is
// staged.
type stageHook struct {
	*batchHandler
	stage func(in *Incoming)
}

func (h *stageHook) Stage(ctx context.Context, in *Incoming) Staged {
	h.stage(in)
	return h.batchHandler.Stage(ctx, in)
}

// scanCounts counts the first connection's commands that find the
// messages to fetch, and keeps the UID sets of its metadata fetches.
type scanCounts struct {
	selects, searches atomic.Int32
	mu                sync.Mutex
	meta              []string
}

// metaSets are the UID sets of the metadata fetches so far.
func (c *scanCounts) metaSets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.meta)
}

// countScans sets p's OnCommand to count the first connection's SELECTs,
// UID SEARCHes and metadata (size and date) FETCHes.
func countScans(p *devmail.FaultProxy) *scanCounts {
	var c scanCounts
	p.OnCommand = func(conn int, line string) {
		cmd := strings.ToUpper(line)
		switch {
		case conn != 1:
		case strings.Contains(cmd, " SELECT "):
			c.selects.Add(1)
		case strings.Contains(cmd, " UID SEARCH "):
			c.searches.Add(1)
		case strings.Contains(cmd, " UID FETCH ") && strings.Contains(cmd, "RFC822.SIZE"):
			c.mu.Lock()
			c.meta = append(c.meta, strings.Fields(line)[3])
			c.mu.Unlock()
		}
	}
	return &c
}

// A missing folder is retried with backoff and logged once, not on every
// attempt; once the folder exists the worker carries on.
func TestMissingFolderRetriedQuietly(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	cfg := mailboxConfig(srv)
	cfg.Folder = "Support"
	h := newHandler(nil)
	cs := newCursors()
	r := startWorker(t, cfg, h, cs)
	r.waitEvent(t, "disconnected", 4)
	if st := r.w.Status(); !strings.Contains(st.LastError, "Support") {
		t.Fatalf("status %+v", st)
	}
	if n := r.log.count(t, "WARN", "IMAP server refused a command; reconnecting"); n != 1 {
		t.Fatalf("%d warnings for the same error", n)
	}
	if n := r.log.count(t, "INFO", "IMAP reconnected"); n != 0 {
		t.Fatalf("%d info lines for flapping reconnects", n)
	}

	if err := srv.CreateFolder(testUser, "Support"); err != nil {
		t.Fatal(err)
	}
	deliver(t, srv, "Support", testMessage(1, "x"))
	r.w.Kick()
	cs.waitLastUID(t, "support", 1)
}

// batchHandler commits whole batches, remembering each batch's UIDs, and
// answers Retry for the UIDs in retry.
type batchHandler struct {
	mu      sync.Mutex
	retry   map[uint32]bool
	commits [][]uint32
	inbox   func() []uint32 // the INBOX at commit time
	before  [][]uint32
}

// batchStaged is what batchHandler stages: the UID, and the Message-ID it
// read from the body for the worker's log lines.
type batchStaged struct {
	uid       uint32
	messageID string
}

func (h *batchHandler) Stage(_ context.Context, in *Incoming) Staged {
	m, err := mail.ReadMessage(in.Body)
	if err == nil {
		_, err = io.Copy(io.Discard, m.Body)
	}
	if err != nil {
		return Disposition{Action: Retry, Reason: err.Error()}
	}
	return batchStaged{in.UID, strings.Trim(m.Header.Get("Message-Id"), "<>")}
}

func (h *batchHandler) Commit(_ context.Context, batch []Staged) []Disposition {
	var uids []uint32
	ds := make([]Disposition, len(batch))
	for i, v := range batch {
		st := v.(batchStaged)
		uids = append(uids, st.uid)
		ds[i].MessageID = st.messageID
		if h.retry[st.uid] {
			ds[i].Action, ds[i].Reason = Retry, "test"
		}
	}
	inbox := h.inbox()
	h.mu.Lock()
	h.commits = append(h.commits, uids)
	h.before = append(h.before, inbox)
	h.mu.Unlock()
	return ds
}

// A backlog is fetched, committed and moved a batch at a time: one Commit
// for the batch, in UID order, before any message leaves the INBOX; a
// message the handler leaves holds the cursor below it.
func TestBacklogCommittedAsOneBatchBeforeAnyMove(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 6; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	h := &batchHandler{retry: map[uint32]bool{4: true}}
	h.inbox = func() []uint32 { return uidsOf(messages(t, srv, "INBOX")) }
	cs := newCursors()
	r := newBatchWorker(t, mailboxConfig(srv), h, cs)
	r.w.batch = 4
	r.start(t)
	r.waitEvent(t, "cycle", 2) // [1 2 3 4], then at once [5 6]
	h.mu.Lock()
	commits, before := h.commits, h.before
	h.mu.Unlock()
	if len(commits) != 2 || !slices.Equal(commits[0], []uint32{1, 2, 3, 4}) || !slices.Equal(commits[1], []uint32{5, 6}) {
		t.Fatalf("commits = %v, want [[1 2 3 4] [5 6]]", commits)
	}
	if !slices.Equal(before[0], []uint32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("INBOX at the first commit = %v: messages moved before their commit", before[0])
	}
	if got := h.inbox(); !slices.Equal(got, []uint32{4}) {
		t.Fatalf("INBOX = %v, want [4] (left by the handler)", got)
	}
	if c := cs.get("support"); c.LastUID != 3 {
		t.Fatalf("cursor at UID %d, want 3: UID 4 is still in the folder", c.LastUID)
	}
}

// A worker held by something without a deadline (here a handler that never
// returns) is reported wedged once it is quiet longer than any healthy
// state lasts, and no longer once it moves on.
func TestHungHandlerMakesTheWorkerWedged(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "x"))
	release := make(chan struct{})
	h := newHandler(func(_ context.Context, in *Incoming, n int) Disposition {
		if n == 1 {
			<-release
		}
		return Disposition{Action: Ack}
	})
	cfg := mailboxConfig(srv)
	cfg.PollInterval = 50 * time.Millisecond
	r := newWorker(t, cfg, h, newCursors())
	r.w.stepTimeout, r.w.stopGrace, r.w.backoffMax = 50*time.Millisecond, 10*time.Millisecond, 20*time.Millisecond
	if _, wedged := r.w.Wedged(time.Now()); wedged {
		t.Fatal("a worker that has not started is wedged")
	}
	r.start(t)
	waitUntil(t, "the worker reported wedged", func() bool { _, w := r.w.Wedged(time.Now()); return w })
	close(release)
	waitUntil(t, "the worker no longer wedged", func() bool { _, w := r.w.Wedged(time.Now()); return !w })
}

// waitUntil checks cond every few milliseconds until it holds, failing at
// the deadline: for conditions that become true with the passage of time
// (no event announces them).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitFor)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The folder is recreated (new UIDVALIDITY) while a batch is committing:
// its UIDs now name other messages, so none of them is moved; the new
// messages are handled and moved as usual.
func TestUIDValidityChangeWhileABatchCommitsMovesNothingOfIt(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 4; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "old"))
	}
	p, cfg := startProxy(t, srv)
	var bodyFetches, moverSelects atomic.Int32
	recreated := make(chan struct{})
	p.OnCommand = func(conn int, line string) {
		cmd := strings.ToUpper(line)
		switch {
		case conn == 1 && strings.Contains(cmd, "BODY.PEEK[]") && bodyFetches.Add(1) == 2:
			// After the first batch [1 2] was staged, before the download
			// of the next (on the first connection, which keeps the
			// folder selected for it; the second moves the old batch).
			if err := srv.DeleteFolder(testUser, "INBOX"); err != nil {
				panic(err)
			}
			if err := srv.CreateFolder(testUser, "INBOX"); err != nil {
				panic(err)
			}
			for i := 5; i <= 6; i++ {
				if _, err := srv.Deliver(testUser, "INBOX", []byte(testMessage(i, "new"))); err != nil {
					panic(err)
				}
			}
			close(recreated)
		case conn == 2 && strings.Contains(cmd, " SELECT ") && moverSelects.Add(1) == 2:
			// The second connection selects the folder again before it
			// moves the old batch: not before the folder was recreated,
			// or it would rightly move the old messages first.
			select {
			case <-recreated:
			case <-time.After(waitFor):
			}
		}
	}
	h := &batchHandler{inbox: func() []uint32 { return nil }}
	cs := newCursors()
	r := newBatchWorker(t, cfg, h, cs)
	r.w.batch = 2
	r.start(t)
	var processed []devmail.Stored
	waitUntil(t, "two messages in Processed", func() bool {
		// The first connection may wait on the old folder, which the test
		// server never says is gone (Dovecot would disconnect it): a kick
		// starts the next cycle, which selects the new one.
		r.w.Kick()
		processed, _ = srv.Messages(testUser, "Processed") // an error until the worker created it
		return len(processed) >= 2
	})
	if len(processed) != 2 {
		t.Fatalf("Processed holds %d messages, want the 2 new ones", len(processed))
	}
	for _, m := range processed {
		if !strings.Contains(string(m.Raw), "new") {
			t.Errorf("Processed holds %q, which no commit of the new folder covered", m.Raw)
		}
	}
	// The worker logs a move once the server has answered it.
	var moved []string
	waitUntil(t, "two moves logged", func() bool {
		moved = nil
		for _, rec := range r.log.records(t) {
			if rec["msg"] == "message processed" {
				moved = append(moved, fmt.Sprint(rec["message_id"]))
			}
		}
		return len(moved) >= 2
	})
	if !slices.Equal(moved, []string{"m5@customer.example", "m6@customer.example"}) {
		t.Errorf("moved as processed: %v; want only the new folder's m5 and m6 (the old batch's UIDs are void)", moved)
	}
}

// A batch is bounded by the size of its messages too: its parsed messages
// stay in memory until it is committed.
func TestBatchBoundedByBytes(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= 5; i++ {
		deliver(t, srv, "INBOX", testMessage(i, strings.Repeat("x", 1000)))
	}
	size := int64(len(testMessage(1, strings.Repeat("x", 1000))))
	h := &batchHandler{inbox: func() []uint32 { return nil }}
	r := newBatchWorker(t, mailboxConfig(srv), h, newCursors())
	r.w.batchBytes = 2*size + size/2 // room for two
	r.start(t)
	r.waitEvent(t, "cycle", 3)
	h.mu.Lock()
	defer h.mu.Unlock()
	if want := [][]uint32{{1, 2}, {3, 4}, {5}}; !slices.EqualFunc(h.commits, want, slices.Equal) {
		t.Fatalf("commits = %v, want %v", h.commits, want)
	}
}

// While a backlog drains, committed batches are moved on a second
// connection (two at a time), so that the next batch downloads meanwhile
// on the first;
// once the backlog is done that connection is closed, and a message that
// arrives alone is moved on the first as before.
func TestBacklogMovesOnASecondConnection(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	var mu sync.Mutex
	var moves, bodies []int // connection of each MOVE, of each body FETCH
	p.OnCommand = func(conn int, line string) {
		mu.Lock()
		defer mu.Unlock()
		switch upper := strings.ToUpper(line); {
		case strings.Contains(upper, " MOVE "):
			moves = append(moves, conn)
		case strings.Contains(upper, "BODY.PEEK[]"):
			bodies = append(bodies, conn)
		}
	}
	cs := newCursors()
	r := drainBacklog(t, srv, cfg, cs)
	mu.Lock()
	if !slices.Equal(bodies, []int{1, 1, 1}) || !slices.Equal(moves, []int{2, 2}) {
		t.Errorf("bodies fetched on connections %v, moved on %v; want the three batches fetched on 1 and moved on 2 (the first two in one MOVE)", bodies, moves)
	}
	moves = nil
	mu.Unlock()

	deliver(t, srv, "INBOX", testMessage(7, "alone"))
	r.w.Kick()
	cs.waitLastUID(t, "support", 7)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(moves, []int{1}) || p.Accepted() != 2 {
		t.Errorf("a lone message moved on connections %v with %d connections accepted; want it moved on the first, and no third connection", moves, p.Accepted())
	}
}

// Batches are moved two at a time, but the backlog's last batch does not
// carry the one before: that one moves while the last commits, and the
// backlog ends with the move of the last batch alone.
func TestBacklogLastBatchMovesAloneAfterTheOneBefore(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 8)
	var mu sync.Mutex
	var moves []string
	p.OnCommand = func(conn int, line string) {
		if upper := strings.ToUpper(line); strings.Contains(upper, " MOVE ") {
			mu.Lock()
			moves = append(moves, strings.Fields(upper)[3]) // tag UID MOVE set folder
			mu.Unlock()
		}
	}
	r := newBatchWorker(t, cfg, &batchHandler{inbox: func() []uint32 { return nil }}, newCursors())
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 4)
	if got := len(messages(t, srv, "Processed")); got != 8 {
		t.Fatalf("Processed holds %d messages, want 8", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(moves, []string{"1:4", "5:6", "7:8"}) {
		t.Errorf("moved %v; want the first two batches together, then the third and the last alone", moves)
	}
}

// A batch waiting to be moved with the next one is moved alone when the
// next one fails (here the first connection breaks in its download): it
// is committed, and leaving it in the folder would only make the next
// session offer it again.
func TestBacklogBatchWaitingForTheNextMovesAloneWhenTheNextFails(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	var bodyFetches atomic.Int32
	var mu sync.Mutex
	var moves []string // connection and UID set of each MOVE
	p.OnCommand = func(conn int, line string) {
		upper := strings.ToUpper(line)
		switch {
		case conn == 1 && strings.Contains(upper, "BODY.PEEK[]") && bodyFetches.Add(1) == 2:
			p.Arm(devmail.DropMidFetch, 1) // batch [3 4]
		case strings.Contains(upper, " MOVE "):
			mu.Lock()
			moves = append(moves, fmt.Sprintf("%d:%s", conn, strings.Fields(upper)[3]))
			mu.Unlock()
		}
	}
	h := &batchHandler{inbox: func() []uint32 { return nil }}
	r := newBatchWorker(t, cfg, h, newCursors())
	r.w.batch = 2
	r.start(t)
	waitInjected(t, p, devmail.DropMidFetch, 1)
	waitUntil(t, "all six messages in Processed", func() bool {
		return len(messages(t, srv, "Processed")) == 6
	})
	mu.Lock()
	defer mu.Unlock()
	// Connections: 1 and its mover 2, then 3 and its mover 4.
	// After the reconnect, [3 4] is the last batch but one of a backlog of
	// two: each moves alone.
	if !slices.Equal(moves, []string{"2:1:2", "4:3:4", "4:5:6"}) {
		t.Errorf("MOVEs (connection:set) %v; want 1:2 alone on the first mover, then 3:4 and 5:6 on the second", moves)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var committed []uint32
	for _, b := range h.commits {
		committed = append(committed, b...)
	}
	if !slices.Equal(committed, []uint32{1, 2, 3, 4, 5, 6}) {
		t.Errorf("committed %v, want each message once, in order", committed)
	}
}

// A server that refuses a second connection gets the moves on the first,
// and one warning for the backlog, not a new attempt for every batch.
func TestBacklogWithoutASecondConnectionMovesOnTheFirst(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	var once sync.Once
	var mu sync.Mutex
	var moves []int
	p.OnCommand = func(conn int, line string) {
		upper := strings.ToUpper(line)
		if strings.Contains(upper, " SELECT ") {
			once.Do(func() { p.Arm(devmail.ByeAtGreeting, 100) }) // every later connection
		}
		if strings.Contains(upper, " MOVE ") {
			mu.Lock()
			moves = append(moves, conn)
			mu.Unlock()
		}
	}
	r := drainBacklog(t, srv, cfg, newCursors())
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(moves, []int{1, 1, 1}) {
		t.Errorf("moved on connections %v, want all three batches on the first", moves)
	}
	if n := r.log.count(t, "WARN", "cannot open a second connection to move messages during the backlog; moving on the first until the next reconnect"); n != 1 {
		t.Errorf("%d warnings about the second connection, want 1", n)
	}
}

// backlogBehindProxy delivers a backlog of n messages (UIDs 1 to n) and
// puts the fault proxy in front of the server; set its OnCommand before
// the worker starts (drainBacklog takes six).
func backlogBehindProxy(t *testing.T, n int) (*devmail.Server, *devmail.FaultProxy, config.Mailbox) {
	t.Helper()
	srv := startServer(t, devmail.Options{})
	for i := 1; i <= n; i++ {
		deliver(t, srv, "INBOX", testMessage(i, "x"))
	}
	p, cfg := startProxy(t, srv)
	return srv, p, cfg
}

// drainBacklog runs a worker with batches of two over the six messages
// ([1 2] [3 4] [5 6]) until all are in Processed.
func drainBacklog(t *testing.T, srv *devmail.Server, cfg config.Mailbox, cs CursorStore) *running {
	t.Helper()
	return drainWith(t, srv, cfg, &batchHandler{inbox: func() []uint32 { return nil }}, cs, 6)
}

// drainWith runs a worker with h in batches of two over a backlog of n
// messages (n even) until all are in Processed.
func drainWith(t *testing.T, srv *devmail.Server, cfg config.Mailbox, h Handler, cs CursorStore, n int) *running {
	t.Helper()
	r := newBatchWorker(t, cfg, h, cs)
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", n/2)
	if got := len(messages(t, srv, "Processed")); got != n {
		t.Fatalf("Processed holds %d messages, want %d", got, n)
	}
	return r
}

// A backlog's second connection is opened as soon as the search finds
// the backlog, beside the first batch's download: opened after it, its
// LOGIN and SELECT held up the drain's first commit (~40 ms on the bench).
func TestBacklogOpensTheMoverBesideTheFirstDownload(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	moverSelected := make(chan struct{})
	var once sync.Once
	var heldUntilSelected atomic.Bool
	p.OnCommand = func(conn int, line string) {
		upper := strings.ToUpper(line)
		switch {
		case conn == 2 && strings.Contains(upper, " SELECT "):
			once.Do(func() { close(moverSelected) })
		case conn == 1 && strings.Contains(upper, "BODY.PEEK[]"):
			// The first batch's bodies wait for the second connection.
			heldUntilSelected.Store(arrives(moverSelected))
		}
	}
	r := newBatchWorker(t, cfg, &batchHandler{inbox: func() []uint32 { return nil }}, newCursors())
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 3)
	if got := len(messages(t, srv, "Processed")); got != 6 {
		t.Fatalf("Processed holds %d messages, want 6", got)
	}
	if !heldUntilSelected.Load() {
		t.Error("the second connection selected the folder only after the first batch's download")
	}
}

// While a batch of a backlog commits (its fsyncs are slow), the next two
// download: the one after it waits for that commit before it commits,
// not before the one after that downloads. Commits keep their order.
func TestBacklogDownloadsWhileTheBatchBeforeCommits(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 8)
	thirdDownload := make(chan struct{})
	var bodies atomic.Int32
	p.OnCommand = func(conn int, line string) {
		if conn == 1 && strings.Contains(strings.ToUpper(line), "BODY.PEEK[]") && bodies.Add(1) == 3 {
			close(thirdDownload)
		}
	}
	var calls atomic.Int32
	var heldUntilThirdDownload atomic.Bool
	h := &batchHandler{inbox: func() []uint32 {
		if calls.Add(1) == 1 {
			// The first commit lasts until the third batch downloads.
			heldUntilThirdDownload.Store(arrives(thirdDownload))
		}
		return nil
	}}
	drainWith(t, srv, cfg, h, newCursors(), 8)
	if !heldUntilThirdDownload.Load() {
		t.Error("the third batch was not downloaded while the first was committing")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if want := [][]uint32{{1, 2}, {3, 4}, {5, 6}, {7, 8}}; !slices.EqualFunc(h.commits, want, slices.Equal) {
		t.Errorf("commits = %v, want %v", h.commits, want)
	}
}

// While the mover is slow to move a backlog's first batches, the batches
// after them are downloaded and committed meanwhile: waiting for those
// moves held up the next download and the preparing of the batch just
// staged. The moves keep their order, and the cursor passes a batch only
// once it is moved.
func TestBacklogDownloadsWhileOlderBatchesAreMoved(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 10)
	fifthStaged := make(chan struct{})
	var mu sync.Mutex
	var moves []string
	var heldUntilStaged atomic.Bool
	p.OnCommand = func(conn int, line string) {
		upper := strings.ToUpper(line)
		if !strings.Contains(upper, " MOVE ") {
			return
		}
		mu.Lock()
		moves = append(moves, strings.Fields(upper)[3]) // tag UID MOVE set folder
		first := len(moves) == 1
		mu.Unlock()
		if first {
			// Hold the first two batches' move until the fifth batch
			// is downloaded.
			heldUntilStaged.Store(arrives(fifthStaged))
		}
	}
	var once sync.Once
	h := &stageHook{batchHandler: &batchHandler{inbox: func() []uint32 { return nil }}, stage: func(in *Incoming) {
		if in.UID == 9 {
			once.Do(func() { close(fifthStaged) })
		}
	}}
	cs := newCursors()
	drainWith(t, srv, cfg, h, cs, 10)
	if !heldUntilStaged.Load() {
		t.Error("the fifth batch was not downloaded while the first two were being moved")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(moves, []string{"1:4", "5:8", "9:10"}) {
		t.Errorf("moved %v, want batches two by two, in order", moves)
	}
	if c := cs.get(cfg.Name); c.LastUID != 10 {
		t.Errorf("cursor at UID %d after the backlog, want 10", c.LastUID)
	}
}

// arrives waits for ch to be closed, up to waitFor, and reports whether
// it was.
func arrives(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(waitFor):
		return false
	}
}

// preparingHandler is batchHandler with a Prepare step.
type preparingHandler struct {
	*batchHandler
	prepared func(uids []uint32)
}

func (h preparingHandler) Prepare(_ context.Context, batch []Staged) {
	var uids []uint32
	for _, v := range batch {
		uids = append(uids, v.(batchStaged).uid)
	}
	h.prepared(uids)
}

// A Preparer's batch is prepared beside the commit of the batch before it
// (on the bench, the raw store's sync came off the path the batches'
// commits take one at a time), and committed after it.
func TestBacklogPreparesTheNextBatchWhileTheLastCommits(t *testing.T) {
	srv, _, cfg := backlogBehindProxy(t, 6)
	secondPrepared := make(chan struct{})
	var preps atomic.Int32
	var calls atomic.Int32
	var heldUntilPrepared atomic.Bool
	h := preparingHandler{
		batchHandler: &batchHandler{inbox: func() []uint32 {
			if calls.Add(1) == 1 {
				// The first commit lasts until the second batch is prepared.
				heldUntilPrepared.Store(arrives(secondPrepared))
			}
			return nil
		}},
		prepared: func(uids []uint32) {
			if preps.Add(1) == 2 {
				close(secondPrepared)
			}
		},
	}
	drainWith(t, srv, cfg, h, newCursors(), 6)
	if !heldUntilPrepared.Load() || preps.Load() != 3 {
		t.Errorf("second batch prepared during the first commit: %v; %d batches prepared, want 3", heldUntilPrepared.Load(), preps.Load())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if want := [][]uint32{{1, 2}, {3, 4}, {5, 6}}; !slices.EqualFunc(h.commits, want, slices.Equal) {
		t.Errorf("commits = %v, want %v", h.commits, want)
	}
}

// While the mover moves batches of a backlog, the next one is already
// committed: the move is the IMAP server's work, and holding the commit
// for it left the machine idle. A batch waits to be moved together with
// the next (one MOVE for two batches costs the server less), and the
// moves still go one at a time, in the order of the commits.
func TestBacklogCommitsTheNextBatchWhileTheLastIsMoved(t *testing.T) {
	srv, p, cfg := backlogBehindProxy(t, 6)
	var commits atomic.Int32
	thirdCommit := make(chan struct{})
	h := &batchHandler{inbox: func() []uint32 {
		if commits.Add(1) == 3 {
			close(thirdCommit)
		}
		return nil
	}}
	var mu sync.Mutex
	var moves []string
	heldUntilCommit := false
	p.OnCommand = func(conn int, line string) {
		upper := strings.ToUpper(line)
		if !strings.Contains(upper, " MOVE ") {
			return
		}
		mu.Lock()
		moves = append(moves, strings.Fields(upper)[3]) // tag UID MOVE set folder
		first := len(moves) == 1
		mu.Unlock()
		if first {
			// Hold the first two batches' move until the third commits.
			select {
			case <-thirdCommit:
				mu.Lock()
				heldUntilCommit = true
				mu.Unlock()
			case <-time.After(waitFor):
			}
		}
	}
	r := newBatchWorker(t, cfg, h, newCursors())
	r.w.batch = 2
	r.start(t)
	r.waitEvent(t, "cycle", 3)
	if got := uidsOf(messages(t, srv, "Processed")); !slices.Equal(got, []uint32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("Processed = %v, want all six", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !heldUntilCommit {
		t.Error("the third batch was not committed while the first two were being moved")
	}
	if !slices.Equal(moves, []string{"1:4", "5:6"}) {
		t.Errorf("moved %v, want the first two batches together, then the last, in order", moves)
	}
}
