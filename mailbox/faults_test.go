package mailbox

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

// Server faults injected by devmail's FaultProxy between the worker and
// devmail's IMAP server.

func startProxy(t *testing.T, srv *devmail.Server) (*devmail.FaultProxy, config.Mailbox) {
	t.Helper()
	p, err := devmail.StartFaultProxy(srv.IMAPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := mailboxConfig(srv)
	cfg.IMAP.Host, cfg.IMAP.Port = p.Host, p.Port
	return p, cfg
}

func waitInjected(t *testing.T, p *devmail.FaultProxy, f devmail.Fault, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.WaitInjected(ctx, f, n); err != nil {
		t.Fatal(err)
	}
}

// bodyHandler reads every body to the end and acknowledges whatever it
// read, even a body cut short: the worker, not the handler, must notice
// the broken FETCH and leave the message in place.
type bodyHandler struct {
	mu    sync.Mutex
	reads []bodyRead
}

type bodyRead struct {
	uid uint32
	n   int
	err error
}

func (h *bodyHandler) Handle(_ context.Context, in *Incoming) Disposition {
	b, err := io.ReadAll(in.Body)
	h.mu.Lock()
	h.reads = append(h.reads, bodyRead{uid: in.UID, n: len(b), err: err})
	h.mu.Unlock()
	return Disposition{Action: Ack}
}

func (h *bodyHandler) all() []bodyRead {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bodyRead(nil), h.reads...)
}

// A connection cut in the middle of BODY[] leaves the message in the
// folder (even though the handler said Ack); after the reconnect it is
// fetched whole and acknowledged once.
func TestConnectionDroppedMidFetchRefetchesWholeMessage(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	p, cfg := startProxy(t, srv)
	body := strings.Repeat("0123456789abcdef ", 4096) // ~68 KB: a literal worth cutting
	raw := testMessage(1, body)
	deliver(t, srv, "INBOX", raw)
	p.Arm(devmail.DropMidFetch, 1)
	h := &bodyHandler{}
	cs := newCursors()
	r := startWorker(t, cfg, h, cs)
	waitInjected(t, p, devmail.DropMidFetch, 1)
	cs.waitLastUID(t, "support", 1)
	r.waitEvent(t, "disconnected", 1)

	reads := h.all()
	if len(reads) != 2 {
		t.Fatalf("handler called %d times (%+v), want 2: the cut fetch and the whole one", len(reads), reads)
	}
	if reads[0].err == nil || reads[0].n >= len(raw) {
		t.Errorf("first read: %d bytes, err %v; want a short read with an error", reads[0].n, reads[0].err)
	}
	if reads[1].err != nil || reads[1].n != len(raw) {
		t.Errorf("second read: %d bytes, err %v; want all %d bytes", reads[1].n, reads[1].err, len(raw))
	}
	if in, done := messages(t, srv, "INBOX"), messages(t, srv, "Processed"); len(in) != 0 || len(done) != 1 {
		t.Fatalf("INBOX has %d, Processed %d messages; want 0 and 1", len(in), len(done))
	}
	if n := r.log.count(t, "WARN", "messages not finished; they will be offered again"); n != 1 {
		t.Errorf("%d warnings about the unfinished message, want 1", n)
	}
}

// "* BYE" instead of a greeting, right after LOGIN and while idling: each
// ends the session; the worker reconnects and the mail still arrives.
func TestByeAtGreetingAfterLoginAndDuringIdle(t *testing.T) {
	for _, tc := range []struct {
		fault     devmail.Fault
		armLate   bool // arm after the first cycle (the worker is idling)
		wantError string
	}{
		{fault: devmail.ByeAtGreeting, wantError: "greeting"},
		{fault: devmail.ByeAfterLogin},
		{fault: devmail.ByeDuringIdle, armLate: true},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			srv := startServer(t, devmail.Options{})
			p, cfg := startProxy(t, srv)
			if !tc.armLate {
				p.Arm(tc.fault, 2)
			}
			h := newHandler(nil)
			cs := newCursors()
			r := startWorker(t, cfg, h, cs)
			if tc.armLate {
				r.waitEvent(t, "cycle", 1)
				p.Arm(tc.fault, 2)
				r.w.Kick() // end this IDLE; the next one gets the BYE
			}
			waitInjected(t, p, tc.fault, 2)
			r.waitEvent(t, "disconnected", 2)
			if st := r.w.Status(); tc.wantError != "" && !strings.Contains(st.LastError, tc.wantError) {
				t.Errorf("LastError %q does not name the stage %q", st.LastError, tc.wantError)
			}
			deliver(t, srv, "INBOX", testMessage(1, "after the BYE"))
			r.w.Kick()
			cs.waitLastUID(t, "support", 1)
			if n := len(messages(t, srv, "Processed")); n != 1 {
				t.Fatalf("Processed holds %d messages, want 1", n)
			}
		})
	}
}

// A connection that goes silent while idling (no FIN, no RST) is given up
// within the liveness bound: the poll interval (when IDLE is renewed) plus
// the step deadline for the server's answer.
func TestSilentDeadConnectionDetectedWithinLiveness(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	p, cfg := startProxy(t, srv)
	cfg.PollInterval = 200 * time.Millisecond
	h := newHandler(nil)
	cs := newCursors()
	r := newWorker(t, cfg, h, cs)
	r.w.stepTimeout = 500 * time.Millisecond
	r.start(t)
	r.waitEvent(t, "cycle", 1)

	p.SetFrozen(true)
	frozen := time.Now()
	r.waitEvent(t, "disconnected", 1)
	took := time.Since(frozen)
	bound := cfg.PollInterval + r.w.stepTimeout
	if took > bound+time.Second {
		t.Fatalf("dead connection noticed after %v, want within %v (+1 s slack)", took, bound)
	}
	if st := r.w.Status(); !strings.Contains(st.LastError, "did not answer") {
		t.Errorf("LastError %q does not say the server stopped answering", st.LastError)
	}
	p.SetFrozen(false)
	deliver(t, srv, "INBOX", testMessage(1, "after the freeze"))
	cs.waitLastUID(t, "support", 1)
}

// The production timings: a dead connection is noticed within minutes,
// not hours, and reconnect backoff grows to minutes.
func TestDefaultLivenessAndBackoffAreMinutes(t *testing.T) {
	cfg := config.Mailbox{PollInterval: 30 * time.Second}
	w := NewWorker(cfg, OneByOne(newHandler(nil)), newCursors(), nil)
	if live := w.cfg.PollInterval + w.stepTimeout; live > 5*time.Minute {
		t.Errorf("liveness bound %v with poll_interval 30s, want ≤ 5m", live)
	}
	if w.backoffMax < time.Minute || w.backoffMax > 15*time.Minute {
		t.Errorf("backoff cap %v, want minutes", w.backoffMax)
	}
}

// The processed folder deleted while the worker runs: the move fails, the
// message stays, the folder is created again at the reconnect and the
// message lands in it.
func TestProcessedFolderDeletedWhileRunning(t *testing.T) {
	for _, folder := range []string{"Processed", "Quarantine"} {
		t.Run(folder, func(t *testing.T) {
			srv := startServer(t, devmail.Options{})
			action := Ack
			if folder == "Quarantine" {
				action = Quarantine
			}
			h := newHandler(func(context.Context, *Incoming, int) Disposition { return Disposition{Action: action, Reason: "test"} })
			cs := newCursors()
			r := startWorker(t, mailboxConfig(srv), h, cs)
			r.waitEvent(t, "cycle", 1)
			if err := srv.DeleteFolder(testUser, folder); err != nil {
				t.Fatal(err)
			}
			deliver(t, srv, "INBOX", testMessage(1, "x"))
			cs.waitLastUID(t, "support", 1)
			if got := messages(t, srv, folder); len(got) != 1 {
				t.Fatalf("%s holds %d messages, want 1", folder, len(got))
			}
			if n := len(messages(t, srv, "INBOX")); n != 0 {
				t.Fatalf("INBOX still holds %d messages", n)
			}
			if st := r.w.Status(); !st.Connected || st.Reconnects < 1 || !strings.Contains(st.LastError, folder) {
				t.Errorf("status %+v: want a reconnect and an error naming %s", st, folder)
			}
		})
	}
}

// Wrong credentials: the worker backs off exponentially up to its cap,
// warns once (the error does not change), logs the repeats at debug level,
// and never loops tightly.
func TestAuthFailureBacksOffAndWarnsOnce(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	p, cfg := startProxy(t, srv)
	cfg.IMAP.Password = "wrong"
	r := newWorker(t, cfg, newHandler(nil), newCursors())
	r.w.backoffMin = 20 * time.Millisecond
	r.w.backoffMax = 160 * time.Millisecond
	start := time.Now()
	r.start(t)
	r.waitEvent(t, "disconnected", 8)
	elapsed := time.Since(start)
	r.stop(t)

	// 20+40+80+160+160+160+160 ms at -20 % jitter: at least 624 ms.
	if min := 624 * time.Millisecond; elapsed < min {
		t.Errorf("8 failed logins in %v: faster than the backoff allows (%v)", elapsed, min)
	}
	if n := p.Accepted(); n > 9 {
		t.Errorf("%d connections for 8 failures: retrying without backoff", n)
	}
	if n := r.log.count(t, "WARN", msgLoginRefused); n != 1 {
		t.Errorf("%d warnings for the same login failure, want 1", n)
	}
	var retries []time.Duration
	for _, rec := range r.log.records(t) {
		if ns, ok := rec["retry_in"].(float64); ok {
			retries = append(retries, time.Duration(ns))
			if !strings.Contains(rec["err"].(string), "login") {
				t.Errorf("failure logged without the stage: %v", rec["err"])
			}
		}
	}
	if len(retries) < 8 || retries[len(retries)-1] < 128*time.Millisecond || retries[len(retries)-1] > 192*time.Millisecond {
		t.Errorf("retry delays %v: want them to grow to the 160 ms cap (±20 %%)", retries)
	}
	if st := r.w.Status(); !strings.Contains(st.LastError, "login") {
		t.Errorf("LastError %q does not say login failed", st.LastError)
	}
}
