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
	return mailbox.HandlerFunc(func(ctx context.Context, in *mailbox.Incoming) mailbox.Disposition {
		start := time.Now()
		d := next.Handle(ctx, in)
		m.latency.WithLabelValues(in.Mailbox).Observe(time.Since(start).Seconds())
		m.messages.WithLabelValues(in.Mailbox, outcomeLabel(d)).Inc()
		return d
	})
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
