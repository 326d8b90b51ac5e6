package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/store"
)

// outboxStuckAfter is how old the oldest pending notification may get
// before /readyz reports the outbox as stuck.
const outboxStuckAfter = time.Hour

// health serves /readyz and the Prometheus collector behind /metrics; both
// read the live state at request time.
type health struct {
	dataDir string
	store   *store.Store
	pool    *mailboxPool
	events  *eventMetrics
}

// readiness lists what is not ready; empty means ready.
func (h *health) readiness(now time.Time) []string {
	var problems []string
	for _, w := range h.pool.snapshot() {
		m := w.cfg
		st := w.worker.Status()
		switch {
		case !st.Connected:
			problems = append(problems, fmt.Sprintf("mailbox %s: not connected: %s", m.Name, st.LastError))
		case now.Sub(st.LastPoll) > 2*m.PollInterval+time.Minute:
			problems = append(problems, fmt.Sprintf("mailbox %s: no successful poll since %s", m.Name, st.LastPoll.Format(time.RFC3339)))
		}
	}
	if f, err := os.CreateTemp(h.dataDir, ".readyz-"); err != nil {
		problems = append(problems, fmt.Sprintf("data_dir %s not writable: %v", h.dataDir, err))
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	if st, err := h.store.OutboxStats(); err != nil {
		problems = append(problems, "store: "+err.Error())
	} else if st.Pending > 0 && now.Sub(st.Oldest) > outboxStuckAfter {
		problems = append(problems, fmt.Sprintf("outbox stuck: %d notification(s) pending, oldest since %s", st.Pending, st.Oldest.Format(time.RFC3339)))
	}
	return problems
}

func (h *health) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	problems := h.readiness(time.Now())
	w.Header().Set("Content-Type", "application/json")
	code, status := http.StatusOK, "ready"
	if len(problems) > 0 {
		code, status = http.StatusServiceUnavailable, "not ready"
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "problems": problems})
}

var (
	descCases         = prometheus.NewDesc("caseintake_cases", "Cases by status.", []string{"status"}, nil)
	descActiveCases   = prometheus.NewDesc("caseintake_active_cases", "Cases neither closed nor archived, by priority.", []string{"priority"}, nil)
	descOutboxPending = prometheus.NewDesc("caseintake_outbox_pending", "Notifications waiting in the outbox.", nil, nil)
	descOutboxOldest  = prometheus.NewDesc("caseintake_outbox_oldest_age_seconds", "Age of the oldest pending notification (0 when none).", nil, nil)
	descConnected     = prometheus.NewDesc("caseintake_imap_connected", "1 when the mailbox worker is logged in.", []string{"mailbox"}, nil)
	descReconnects    = prometheus.NewDesc("caseintake_imap_reconnects_total", "IMAP connections made after the first.", []string{"mailbox"}, nil)
	descLastPoll      = prometheus.NewDesc("caseintake_imap_last_poll_timestamp_seconds", "End of the last successful poll cycle.", []string{"mailbox"}, nil)
)

// Describe implements prometheus.Collector.
func (h *health) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCases, descActiveCases, descOutboxPending, descOutboxOldest, descConnected, descReconnects, descLastPoll} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (h *health) Collect(ch chan<- prometheus.Metric) {
	if counts, err := h.store.CountByStatus(); err == nil {
		for _, s := range casemodel.Statuses {
			ch <- prometheus.MustNewConstMetric(descCases, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}
	if counts, err := h.store.CountActiveByPriority(); err == nil {
		for _, p := range casemodel.Priorities {
			ch <- prometheus.MustNewConstMetric(descActiveCases, prometheus.GaugeValue, float64(counts[p]), string(p))
		}
	}
	if st, err := h.store.OutboxStats(); err == nil {
		ch <- prometheus.MustNewConstMetric(descOutboxPending, prometheus.GaugeValue, float64(st.Pending))
		age := 0.0
		if st.Pending > 0 {
			age = time.Since(st.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descOutboxOldest, prometheus.GaugeValue, age)
	}
	for _, w := range h.pool.snapshot() {
		name := w.cfg.Name
		st := w.worker.Status()
		connected := 0.0
		if st.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected, name)
		ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(st.Reconnects), name)
		if !st.LastPoll.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastPoll, prometheus.GaugeValue, float64(st.LastPoll.Unix()), name)
		}
	}
}

// metricsHandler exposes h, the event counters and the Go runtime and
// process collectors.
func (h *health) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(h, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(h.events.collectors()...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
