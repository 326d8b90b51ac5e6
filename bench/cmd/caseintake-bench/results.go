package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Results is everything the bench measured; it is written as bench.json.
type Results struct {
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	Machine    string    `json:"machine"`
	LoadBefore string    `json:"loadavg_before"`
	LoadAfter  string    `json:"loadavg_after"`
	Config     Params    `json:"params"`
	Backlog    Backlog   `json:"backlog"`
	Latency    *Latency  `json:"latency,omitempty"`
	Big        *Big      `json:"big_message,omitempty"`
	Stores     []Scale   `json:"store_scale,omitempty"`
}

// Params are the bench's settings.
type Params struct {
	N        int    `json:"backlog_messages"`
	Runs     int    `json:"runs"`
	Seed     uint64 `json:"seed"`
	LatencyN int    `json:"latency_messages"`
	BigMB    int    `json:"big_message_mb"`
	Cases    []int  `json:"store_cases"`
	// DrainLimit cuts a drain short; its rate is then over what it did.
	DrainLimit time.Duration `json:"drain_limit_ns"`
}

// Backlog is the backlog ingest section.
type Backlog struct {
	Fill    Throughput              `json:"fill_append"`
	Kinds   map[string]int          `json:"kinds,omitempty"`
	Runs    map[string][]BacklogRun `json:"runs,omitempty"`
	Summary map[string]Summary      `json:"summary,omitempty"`
	Profile *Profile                `json:"profile,omitempty"`
}

// Stat is a median and the spread (min..max) over runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func stat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Summary is the median and spread per figure for one transport.
type Summary struct {
	RawMsgsPS Stat `json:"raw_messages_per_s"`
	RawMBPS   Stat `json:"raw_mb_per_s"`
	// CommandsMsgsPS is the daemon's IMAP commands with no processing.
	CommandsMsgsPS Stat `json:"imap_commands_only_messages_per_s"`
	DrainMsgsPS    Stat `json:"drain_messages_per_s"`
	DrainMBPS      Stat `json:"drain_mb_per_s"`
	Ratio          Stat `json:"ratio"`
	MoveTailMs     Stat `json:"move_tail_ms"`
	PeakRSSMB      Stat `json:"peak_rss_mb"`
	// CPU per message drained: where the time goes on a CPU-bound machine.
	DaemonCPUMs  Stat `json:"daemon_cpu_ms_per_message"`
	DovecotCPUMs Stat `json:"dovecot_cpu_ms_per_message"`
	MachineCPUMs Stat `json:"machine_cpu_ms_per_message"`
	// The same for the raw fetch and the commands-only pass: Dovecot's
	// and the machine's.
	RawDovecotCPUMs      Stat `json:"raw_fetch_dovecot_cpu_ms_per_message"`
	RawMachineCPUMs      Stat `json:"raw_fetch_machine_cpu_ms_per_message"`
	CommandsDovecotCPUMs Stat `json:"imap_commands_only_dovecot_cpu_ms_per_message"`
	CommandsMachineCPUMs Stat `json:"imap_commands_only_machine_cpu_ms_per_message"`
	// Drained is the fewest messages a run drained before -drain-limit.
	Drained int `json:"drained_min"`
}

func (b *Backlog) summarise() {
	b.Summary = map[string]Summary{}
	for sec, runs := range b.Runs {
		var s Summary
		pick := func(f func(BacklogRun) float64) Stat {
			var v []float64
			for _, r := range runs {
				v = append(v, f(r))
			}
			return stat(v)
		}
		s.RawMsgsPS = pick(func(r BacklogRun) float64 { return r.Raw.MsgsPS })
		s.RawMBPS = pick(func(r BacklogRun) float64 { return r.Raw.MBPS })
		s.CommandsMsgsPS = pick(func(r BacklogRun) float64 { return r.Commands.MsgsPS })
		s.DrainMsgsPS = pick(func(r BacklogRun) float64 { return r.Drain.MsgsPS })
		s.DrainMBPS = pick(func(r BacklogRun) float64 { return r.Drain.MBPS })
		s.Ratio = pick(func(r BacklogRun) float64 { return r.Ratio })
		s.MoveTailMs = pick(func(r BacklogRun) float64 { return r.MoveTailMs })
		s.PeakRSSMB = pick(func(r BacklogRun) float64 { return float64(r.PeakRSS) / 1e6 })
		s.DaemonCPUMs = pick(func(r BacklogRun) float64 { return r.DaemonCPUMs })
		s.DovecotCPUMs = pick(func(r BacklogRun) float64 { return r.DrainCPU.ServerMs })
		s.MachineCPUMs = pick(func(r BacklogRun) float64 { return r.DrainCPU.MachineMs })
		s.RawDovecotCPUMs = pick(func(r BacklogRun) float64 { return r.RawCPU.ServerMs })
		s.RawMachineCPUMs = pick(func(r BacklogRun) float64 { return r.RawCPU.MachineMs })
		s.CommandsDovecotCPUMs = pick(func(r BacklogRun) float64 { return r.CommandsCPU.ServerMs })
		s.CommandsMachineCPUMs = pick(func(r BacklogRun) float64 { return r.CommandsCPU.MachineMs })
		s.Drained = runs[0].Processed
		for _, r := range runs {
			s.Drained = min(s.Drained, r.Processed)
		}
		b.Summary[sec] = s
	}
}

func (s Stat) f(prec int) string {
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.Median, prec, s.Min, prec, s.Max)
}

func verdict(ok bool) string {
	if ok {
		return "meets"
	}
	return "MISSES"
}

func printTable(w io.Writer, r *Results) {
	fmt.Fprintf(w, "\ncaseintake bench — %s, %s UTC, load %s → %s\n", r.Machine, r.Started.Format("2006-01-02 15:04"), r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "figures are median (min–max) over %d runs where repeated\n\n", r.Config.Runs)
	row := func(cols ...string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | ")) }
	row("figure", "caseintake", "reference (limit)", "target", "verdict")
	row("---", "---", "---", "---", "---")
	b := r.Backlog
	if b.Fill.Msgs > 0 {
		row(fmt.Sprintf("backlog fill (APPEND, %d msgs, %.0f MB)", b.Fill.Msgs, float64(b.Fill.Bytes)/1e6), "",
			fmt.Sprintf("%.0f msg/s, %.1f MB/s", b.Fill.MsgsPS, b.Fill.MBPS), "", "")
	}
	for _, sec := range []string{"none", "tls"} {
		s, ok := b.Summary[sec]
		if !ok {
			continue
		}
		name, target := "plaintext", 0.25
		if sec == "tls" {
			name, target = "implicit TLS", 0.50
		}
		drained := fmt.Sprintf("all %d", r.Config.N)
		if s.Drained < r.Config.N {
			drained = fmt.Sprintf("≥ %d of %d before the %v limit", s.Drained, r.Config.N, r.Config.DrainLimit)
		}
		row(fmt.Sprintf("backlog drain %s, msg/s (drained %s)", name, drained), s.DrainMsgsPS.f(0), "raw fetch "+s.RawMsgsPS.f(0), "", "")
		row("backlog drain "+name+", MB/s", s.DrainMBPS.f(1), "raw fetch "+s.RawMBPS.f(1), "", "")
		row("backlog drain "+name+", ratio b/a", s.Ratio.f(3), "1.0", fmt.Sprintf("≥ %.2f", target), verdict(s.Ratio.Median >= target))
		row("backlog drain "+name+": the last move after the last commit, ms", s.MoveTailMs.f(0), "", "", "")
		row("the daemon's IMAP commands alone "+name+", msg/s (no processing, no overlap)", "", s.CommandsMsgsPS.f(0), "", "")
		row("backlog drain "+name+", CPU ms per message (daemon; Dovecot; whole machine)", s.DaemonCPUMs.f(3)+"; "+s.DovecotCPUMs.f(3)+"; "+s.MachineCPUMs.f(3),
			"raw fetch: Dovecot "+s.RawDovecotCPUMs.f(3)+", machine "+s.RawMachineCPUMs.f(3)+"; commands alone: Dovecot "+s.CommandsDovecotCPUMs.f(3)+", machine "+s.CommandsMachineCPUMs.f(3), "", "")
		row("peak RSS draining "+name, s.PeakRSSMB.f(1)+" MB", "", "≤ 100 MB", verdict(s.PeakRSSMB.Max <= 100))
	}
	if p := b.Profile; p != nil {
		row("in-process drain (profile run), msg/s", fmt.Sprintf("%.0f", p.MsgsPS), "", "", "")
	}
	if l := r.Latency; l != nil {
		row(fmt.Sprintf("latency SMTP 250 → case committed (n=%d)", l.Committed.N), l.Committed.String(), "IDLE floor "+l.IdleFloor.String(), "p99 ≤ 1 s", verdict(l.Committed.P99 <= 1000 && l.Committed.N == l.Sent))
		row(fmt.Sprintf("latency SMTP 250 → ack accepted (n=%d)", l.Acked.N), l.Acked.String(), "", "p99 ≤ 1.2 s", verdict(l.Acked.P99 <= 1200 && l.Acked.N == l.Sent))
	}
	if g := r.Big; g != nil {
		row(fmt.Sprintf("%.0f MB message: RSS rise (HWM − RSS before)", float64(g.Size)/1e6), fmt.Sprintf("%.1f MB (%.1f → HWM %.1f MB)", g.RiseMB, g.RSSBeforeMB, g.HWMAfterMB),
			fmt.Sprintf("%.1f s to commit", g.Seconds), "≤ 20 MB", verdict(g.RiseMB <= 20 && g.Outcome != ""))
	}
	for _, s := range r.Stores {
		n := fmt.Sprintf("%d cases", s.Cases)
		row(n+": generation through store API", fmt.Sprintf("%.1f s", s.GenSeconds), fmt.Sprintf("bbolt file %.0f MB", float64(s.FileBytes)/1e6), "", "")
		row(n+fmt.Sprintf(": lifecycle pass (runs at start-up and every minute; %d closed cases)", s.ClosedCases), fmt.Sprintf("%.0f ms", s.LifecycleMS), "", "", "")
		row(n+": daemon start-up to /healthz, /readyz", fmt.Sprintf("%.0f ms, %.0f ms", s.HealthMS, s.ReadyMS), "", "≤ 1 s", verdict(s.ReadyMS <= 1000))
		row(n+fmt.Sprintf(": list --status open (%d results), API", s.OpenResults), fmt.Sprintf("%.1f ms", s.ListOpenMS), fmt.Sprintf("store %.1f ms", s.StoreListOpenMS), "∝ result", "")
		row(n+fmt.Sprintf(": list --status in_progress (%d results), API", s.InProgressResults), fmt.Sprintf("%.1f ms", s.ListInProgressMS), fmt.Sprintf("store %.1f ms", s.StoreListInProgressMS), "∝ result", "")
		row(n+": `cases list --status open --json` CLI", fmt.Sprintf("%.0f ms", s.CLIListOpenMS), "", "", "")
		row(n+": Message-ID lookup (trace API + case)", fmt.Sprintf("%.2f ms", s.LookupMS), fmt.Sprintf("store %.3f ms", s.StoreLookupMS), "∝ result", "")
		row(n+": case view (GET /api/v1/cases/N, with its notifications)", fmt.Sprintf("%.2f ms", s.CaseViewMS), "", "∝ result", "")
		row(n+fmt.Sprintf(": quarantine list (%d results), API", s.QuarantineResults), fmt.Sprintf("%.2f ms", s.QuarantineListMS), "", "∝ result", "")
		row(n+fmt.Sprintf(": list --requester (%d results), API", s.RequesterResults), fmt.Sprintf("%.2f ms", s.RequesterListMS), "", "∝ result", "")
		row(n+fmt.Sprintf(": list --assignee (%d results), API", s.AssigneeResults), fmt.Sprintf("%.1f ms", s.AssigneeListMS), "", "∝ result", "")
		row(n+": /metrics scrape (cases by status, active cases by priority)", fmt.Sprintf("%.1f ms", s.MetricsMS), "", "", "")
		row(n+": `trace MESSAGE-ID` CLI", fmt.Sprintf("%.0f ms", s.CLITraceMS), "", "", "")
	}
}
