package main

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caseintake/caseintake/mailbox"
)

// eventMetrics count what happens as it happens; the health collector
// reads the state (cases, outbox, connections) at scrape time.
type eventMetrics struct {
	messages *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	smtp     *prometheus.CounterVec
}

func newEventMetrics() *eventMetrics {
	return &eventMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caseintake_messages_total",
			Help: "Messages handled, by mailbox and outcome (case:new, case:appended, ignored:<reason>, quarantined, retry).",
		}, []string{"mailbox", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caseintake_message_processing_seconds",
			Help:    "Time from the start of a message's download to its committed decision.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"mailbox"}),
		smtp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caseintake_smtp_recipients_total",
			Help: "Notification recipients by delivery result (sent, deferred, refused).",
		}, []string{"result"}),
	}
}

func (m *eventMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.latency, m.smtp}
}

// smtpResult is notify.Worker's Observe hook.
func (m *eventMetrics) smtpResult(result string, n int) {
	m.smtp.WithLabelValues(result).Add(float64(n))
}

// instrument wraps the pipeline so every message is counted by outcome and
// timed, without the pipeline knowing about metrics.
func (m *eventMetrics) instrument(next mailbox.Handler) mailbox.Handler {
	return instrumented{next: next, m: m}
}

type instrumented struct {
	next mailbox.Handler
	m    *eventMetrics
}

// timedStage is a staged message with the time its processing began.
type timedStage struct {
	v       mailbox.Staged
	mailbox string
	start   time.Time
}

func (i instrumented) Stage(ctx context.Context, in *mailbox.Incoming) mailbox.Staged {
	start := time.Now()
	return timedStage{v: i.next.Stage(ctx, in), mailbox: in.Mailbox, start: start}
}

// Prepare passes the batch on when the handler prepares batches
// (mailbox.Preparer).
func (i instrumented) Prepare(ctx context.Context, batch []mailbox.Staged) {
	if p, ok := i.next.(mailbox.Preparer); ok {
		p.Prepare(ctx, untimed(batch))
	}
}

// untimed is the batch as the handler staged it.
func untimed(batch []mailbox.Staged) []mailbox.Staged {
	vals := make([]mailbox.Staged, len(batch))
	for j, v := range batch {
		vals[j] = v.(timedStage).v
	}
	return vals
}

// Commit times each message from the start of its Stage to the end of the
// batch's commit: how long it took to become durable.
func (i instrumented) Commit(ctx context.Context, batch []mailbox.Staged) []mailbox.Disposition {
	ds := i.next.Commit(ctx, untimed(batch))
	end := time.Now()
	for j, v := range batch {
		ts := v.(timedStage)
		i.m.latency.WithLabelValues(ts.mailbox).Observe(end.Sub(ts.start).Seconds())
		i.m.messages.WithLabelValues(ts.mailbox, outcomeLabel(ds[j])).Inc()
	}
	return ds
}

// outcomeLabel keeps the label set small: quarantine details and retry
// errors are free text, so only their class is a label.
func outcomeLabel(d mailbox.Disposition) string {
	switch d.Action {
	case mailbox.Quarantine:
		return "quarantined"
	case mailbox.Retry:
		return "retry"
	}
	if strings.HasPrefix(d.Reason, "case:") || strings.HasPrefix(d.Reason, "ignored:") {
		return d.Reason
	}
	return "acknowledged"
}
