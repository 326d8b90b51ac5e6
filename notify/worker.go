package notify

import (
	"context"
	"fmt"
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

// Worker renders and delivers the outbox.
type Worker struct {
	store   *store.Store
	render  *Renderer
	sender  *Sender
	log     *slog.Logger
	kick    chan struct{}
	now     func() time.Time
	observe func(result string, recipients int)
	// unrecorded holds the deliveries the store could not record (a full
	// disk), by row: their rows still read pending. Until they are
	// recorded nothing is sent, so that none goes out twice.
	unrecorded map[uint64]unrecorded
}

// unrecorded is a delivery attempt's outcome waiting to be recorded.
type unrecorded struct {
	d  store.Delivery
	at time.Time
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

// NewWorker returns a worker delivering st's outbox through sender, each
// notification rendered by r when it is sent.
func NewWorker(st *store.Store, r *Renderer, sender *Sender, log *slog.Logger) *Worker {
	return &Worker{store: st, render: r, sender: sender, log: log, kick: make(chan struct{}, 1), now: time.Now,
		unrecorded: map[uint64]unrecorded{}}
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
		if !w.recordUnrecorded() {
			return w.now().Add(minBackoff)
		}
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
	log := w.log.With("case", o.CaseID, "kind", o.Kind, "message_id", o.MessageID, "attempt", o.Attempts+1)
	var res Result
	if data, err := w.compose(o); err != nil {
		// Not sent, and not given up: a template fixed in
		// notify.templates_dir sends it at a later attempt.
		res.Temporary = err
		log.Error("cannot render the notification; not sent, will retry (fix the template in notify.templates_dir and restart, or see the error)", "err", err)
	} else {
		res = w.sender.Send(sendCtx, o.EnvelopeFrom, o.To, data)
	}
	if ctx.Err() != nil && len(res.Accepted) == 0 && len(res.Permanent) == 0 {
		return // shutting down: leave it pending, not counted as an attempt
	}
	now := w.now()
	d := store.Delivery{Accepted: res.Accepted, Permanent: res.Permanent, Retry: res.Temporary}
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
		// The server has the message but its row still reads pending:
		// hold the outcome and send nothing more until it is recorded.
		// (Only a restart meanwhile sends it again, with the same
		// Message-ID, which receivers dedupe.)
		w.unrecorded[o.Seq] = unrecorded{d: d, at: now}
		log.Error("outbox: cannot record delivery; no notification goes out until it is recorded (free space in data_dir if the disk is full)", "err", err)
	}
}

// recordUnrecorded records the deliveries held in w.unrecorded and
// reports whether none is left.
func (w *Worker) recordUnrecorded() bool {
	for seq, u := range w.unrecorded {
		if err := w.store.RecordDelivery(seq, u.d, u.at); err != nil {
			w.log.Error("outbox: still cannot record a delivery; no notification goes out until it is recorded (free space in data_dir if the disk is full)",
				"seq", seq, "err", err)
			return false
		}
		delete(w.unrecorded, seq)
	}
	return true
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

// compose renders o from its case as it is now (a row queued before
// schema 6 is sent as it was rendered then).
func (w *Worker) compose(o *store.Outgoing) ([]byte, error) {
	if o.Data != nil {
		return o.Data, nil
	}
	c, err := w.store.GetCase(o.CaseID)
	if err != nil {
		return nil, fmt.Errorf("read case #%d: %w", o.CaseID, err)
	}
	return w.render.Compose(c, o)
}
