package notify

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/caseintake/caseintake/store"
)

// Backoff bounds for retrying a notification after a 4xx or network error.
const (
	minBackoff = 5 * time.Second
	maxBackoff = 30 * time.Minute
	batchSize  = 50
	// idleRecheck is how often the worker looks at the outbox when nothing
	// kicked it, in case a kick was lost.
	idleRecheck = 30 * time.Second
	// sendTimeout bounds one SMTP transaction.
	sendTimeout = 5 * time.Minute
	// inFlightGrace is how long a transaction under way may go on after
	// the worker is told to stop; it stays below serve's stop timeout.
	inFlightGrace = 10 * time.Second
)

// Worker delivers the outbox.
type Worker struct {
	store   *store.Store
	sender  *Sender
	log     *slog.Logger
	kick    chan struct{}
	now     func() time.Time
	observe func(result string, recipients int)
}

// Delivery results passed to an Observe function, per recipient.
const (
	ResultSent     = "sent"     // the server accepted it
	ResultDeferred = "deferred" // 4xx or network error: retried later
	ResultRefused  = "refused"  // 5xx: given up, marked on the case
)

// Observe has f told of every delivery attempt's outcome (for metrics):
// how many recipients were sent, deferred or refused. Call it before Run.
func (w *Worker) Observe(f func(result string, recipients int)) { w.observe = f }

// NewWorker returns a worker delivering st's outbox through sender.
func NewWorker(st *store.Store, sender *Sender, log *slog.Logger) *Worker {
	return &Worker{store: st, sender: sender, log: log, kick: make(chan struct{}, 1), now: time.Now}
}

// Kick tells the worker there is new mail in the outbox.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends. A notification in flight when ctx ends may
// finish for inFlightGrace and is recorded; one still unfinished then is
// abandoned before being marked sent, so it is sent again at the next start
// (with the same Message-ID) rather than lost.
func (w *Worker) Run(ctx context.Context) error {
	defer w.sender.CloseIdle()
	for {
		next := w.deliverDue(ctx)
		w.sender.CloseIdle() // nothing due: no connection held open meanwhile
		wait := idleRecheck
		if !next.IsZero() {
			wait = min(max(next.Sub(w.now()), 0), idleRecheck)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliverDue sends every due notification and returns when the next
// pending one falls due (zero if none is waiting).
func (w *Worker) deliverDue(ctx context.Context) time.Time {
	for ctx.Err() == nil {
		due, next, err := w.store.DueOutbox(w.now(), batchSize)
		if err != nil {
			w.log.Error("outbox: cannot read pending notifications", "err", err)
			return w.now().Add(minBackoff)
		}
		if len(due) == 0 {
			return next
		}
		for _, o := range due {
			if ctx.Err() != nil {
				return time.Time{}
			}
			w.deliver(ctx, o)
		}
	}
	return time.Time{}
}

func (w *Worker) deliver(ctx context.Context, o *store.Outgoing) {
	// The SMTP transaction is not cut the moment ctx ends: cutting it after
	// the server took the message but before we read its answer would send
	// the message again at the next start. It gets inFlightGrace to finish.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(inFlightGrace, cancel) })
	defer stopGrace()
	res := w.sender.Send(sendCtx, o.EnvelopeFrom, o.To, o.Data)
	if ctx.Err() != nil && len(res.Accepted) == 0 && len(res.Permanent) == 0 {
		return // shutting down: leave it pending, not counted as an attempt
	}
	now := w.now()
	d := store.Delivery{Accepted: res.Accepted, Permanent: res.Permanent, Retry: res.Temporary}
	log := w.log.With("case", o.CaseID, "kind", o.Kind, "message_id", o.MessageID, "attempt", o.Attempts+1)
	if res.Temporary != nil {
		d.NextRetry = now.Add(Backoff(o.Attempts + 1))
		log.Warn("notification delayed; will retry", "err", res.Temporary, "retry_at", d.NextRetry.Format(time.RFC3339))
	}
	for r, reason := range res.Permanent {
		log.Error("notification refused permanently", "rcpt", r, "reason", reason)
	}
	if len(res.Accepted) > 0 {
		log.Info("notification sent", "to", res.Accepted)
	}
	if w.observe != nil {
		deferred := len(o.To) - len(res.Accepted) - len(res.Permanent)
		for result, n := range map[string]int{ResultSent: len(res.Accepted), ResultRefused: len(res.Permanent), ResultDeferred: deferred} {
			if n > 0 {
				w.observe(result, n)
			}
		}
	}
	if err := w.store.RecordDelivery(o.Seq, d, now); err != nil {
		// The server has the message but we could not record it: it will
		// be sent again with the same Message-ID, which receivers dedupe.
		log.Error("outbox: cannot record delivery", "err", err)
	}
}

// Backoff is the wait before attempt n+1: exponential from 5 s, capped at
// 30 min, with ±20 % jitter so that many delayed rows do not retry in step.
func Backoff(attempt int) time.Duration {
	d := minBackoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	jitter := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
	return d + jitter
}
