// Package lifecycle runs the daemon's scheduled case jobs: archiving cases
// closed longer than the reopen window, closing solution_provided cases
// after the quiet period, and warning about first-response targets that
// are about to be missed or were missed.
//
// Invariants: every job re-reads the case and re-checks its rule
// (casemodel) inside the transaction that changes it, together with the
// notifications it queues, so a job racing an agent or a reply never acts
// on stale state; a due notice is recorded on the case in that same
// transaction, so it is sent once per case and target even across crashes.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// Options tune the jobs.
type Options struct {
	ReopenWindow   time.Duration // closed longer than this: archived
	AutoCloseAfter time.Duration // solution_provided quiet this long: closed (0: never)
	AtRiskLead     time.Duration // warn this long before a target
	Interval       time.Duration // how often the jobs run
	Now            func() time.Time
}

// Targets builds the response-target policy from the config's lifecycle
// block (which Load has validated and filled with defaults).
func Targets(l config.Lifecycle) (casemodel.Targets, error) {
	l.ApplyDefaults()
	b := l.BusinessHours
	loc, err := time.LoadLocation(b.TimeZone)
	if err != nil {
		return casemodel.Targets{}, fmt.Errorf("lifecycle.business_hours.time_zone: %w", err)
	}
	cal := casemodel.Calendar{Location: loc}
	for _, d := range b.Days {
		cal.Days = append(cal.Days, config.Weekdays[d])
	}
	if cal.Start, err = config.ClockOffset(b.Start); err != nil {
		return casemodel.Targets{}, fmt.Errorf("lifecycle.business_hours.start: %w", err)
	}
	if cal.End, err = config.ClockOffset(b.End); err != nil {
		return casemodel.Targets{}, fmt.Errorf("lifecycle.business_hours.end: %w", err)
	}
	ts := casemodel.Targets{Calendar: cal, ByPriority: map[casemodel.Priority]casemodel.Target{}}
	for p, v := range map[casemodel.Priority]string{casemodel.Urgent: l.ResponseTargets.Urgent,
		casemodel.High: l.ResponseTargets.High, casemodel.Normal: l.ResponseTargets.Normal, casemodel.Low: l.ResponseTargets.Low} {
		t, err := casemodel.ParseTarget(v)
		if err != nil {
			return casemodel.Targets{}, fmt.Errorf("lifecycle.response_targets.%s: %w", p, err)
		}
		ts.ByPriority[p] = t
	}
	return ts, nil
}

// Worker runs the jobs on a schedule.
type Worker struct {
	store    *store.Store
	render   *notify.Renderer
	opts     Options
	log      *slog.Logger
	onCommit func()
}

// New returns a worker; onCommit is called after a run that queued
// notifications (to kick the outbox worker).
func New(st *store.Store, r *notify.Renderer, opts Options, log *slog.Logger, onCommit func()) *Worker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = config.DefaultLifecycleTick
	}
	return &Worker{store: st, render: r, opts: opts, log: log, onCommit: onCommit}
}

// Run runs the jobs at once and then every Interval until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		w.runLogged()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runLogged runs the jobs once, logging a failure or a panic instead of
// stopping the daemon: the next run retries.
func (w *Worker) runLogged() {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("scheduled case jobs panicked; retrying at the next run", "panic", p)
		}
	}()
	if _, err := w.RunOnce(); err != nil {
		w.log.Error("scheduled case jobs failed; retrying at the next run", "err", err)
	}
}

// Result counts what one run did.
type Result struct {
	Archived, AutoClosed, DueNotices int
}

// RunOnce runs every job once at Now. A case that cannot be processed is
// reported in the error and skipped; the others are still processed.
func (w *Worker) RunOnce() (Result, error) {
	var res Result
	now := w.opts.Now()
	queued := false
	defer func() {
		if queued && w.onCommit != nil {
			w.onCommit()
		}
	}()
	var errs []error
	// Archive: no notification (the customer was told when it closed).
	n, err := w.each(casemodel.Closed, now,
		func(c *casemodel.Case) bool { return casemodel.ShouldArchive(c, now, w.opts.ReopenWindow) },
		func(c *casemodel.Case) ([]*store.Outgoing, error) {
			c.SetStatus(casemodel.Archived, "system", fmt.Sprintf("closed longer than the reopen window (%v)", w.opts.ReopenWindow), now)
			return nil, nil
		})
	res.Archived = n
	errs = append(errs, err)
	if w.opts.AutoCloseAfter > 0 {
		n, err = w.each(casemodel.SolutionProvided, now,
			func(c *casemodel.Case) bool { return casemodel.ShouldAutoClose(c, now, w.opts.AutoCloseAfter) },
			func(c *casemodel.Case) ([]*store.Outgoing, error) {
				note := fmt.Sprintf("no reply from the customer for %v after the solution", w.opts.AutoCloseAfter)
				c.SetStatus(casemodel.Closed, "system", note, now)
				rows, err := w.render.StatusChanged(c, notify.Event{From: casemodel.SolutionProvided, To: casemodel.Closed, Actor: "system", Note: note}, now)
				queued = queued || len(rows) > 0
				return rows, err
			})
		res.AutoClosed = n
		errs = append(errs, err)
	}
	for _, st := range casemodel.Statuses {
		if st == casemodel.Closed || st == casemodel.Archived {
			continue
		}
		n, err = w.each(st, now,
			func(c *casemodel.Case) bool { _, ok := casemodel.DueNoticeNeeded(c, now, w.opts.AtRiskLead); return ok },
			func(c *casemodel.Case) ([]*store.Outgoing, error) {
				kind, _ := casemodel.DueNoticeNeeded(c, now, w.opts.AtRiskLead)
				c.NoteDue(kind, now)
				rows, err := w.render.DueNotice(c, notify.Event{Due: kind, Actor: "system"}, now)
				queued = queued || len(rows) > 0
				return rows, err
			})
		res.DueNotices += n
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// each finds the cases in status for which due holds (reading only, so a
// run that has nothing to do writes nothing), then, one transaction per
// case, re-reads the case, re-checks due and applies act, queueing the
// notifications it returns. It counts the cases changed.
func (w *Worker) each(status casemodel.Status, now time.Time, due func(*casemodel.Case) bool, act func(*casemodel.Case) ([]*store.Outgoing, error)) (int, error) {
	list, err := w.store.ListCases(store.Filter{Status: status})
	if err != nil {
		return 0, err
	}
	changed := 0
	var errs []error
	for _, listed := range list {
		if !due(listed) {
			continue
		}
		err := w.store.Update(func(tx *store.Tx) error {
			c, err := tx.Case(listed.ID)
			if err != nil {
				return err
			}
			if c.Status != status || !due(c) {
				return nil // changed since the listing
			}
			rows, err := act(c)
			if err != nil {
				return err
			}
			if err := w.render.Enqueue(tx, c, rows, now); err != nil {
				return err
			}
			if err := tx.PutCase(c); err != nil {
				return err
			}
			changed++
			return nil
		})
		if err != nil {
			// One broken case must not hold up the others.
			errs = append(errs, fmt.Errorf("case #%d: %w", listed.ID, err))
		}
	}
	if changed > 0 {
		w.log.Info("scheduled case job", "status", status, "changed", changed)
	}
	return changed, errors.Join(errs...)
}
