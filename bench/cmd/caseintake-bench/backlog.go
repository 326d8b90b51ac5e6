package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Throughput is one timed pass over the backlog.
type Throughput struct {
	Msgs    int     `json:"messages"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MsgsPS  float64 `json:"messages_per_s"`
	MBPS    float64 `json:"mb_per_s"`
}

func throughput(msgs int, bytes int64, d time.Duration) Throughput {
	s := d.Seconds()
	return Throughput{Msgs: msgs, Bytes: bytes, Seconds: s, MsgsPS: float64(msgs) / s, MBPS: float64(bytes) / 1e6 / s}
}

// BacklogRun is one repetition for one transport.
type BacklogRun struct {
	Raw Throughput `json:"raw_fetch"`
	// Commands is the daemon's IMAP commands alone (stack.commandsOnly).
	Commands  Throughput `json:"imap_commands_only"`
	Drain     Throughput `json:"caseintake_drain"`
	Ratio     float64    `json:"ratio"`
	PeakRSS   int64      `json:"peak_rss_bytes"`
	Load      string     `json:"load_after"`
	Processed int        `json:"processed"`
	// MoveTailMs is from the last commit to the last move out of the
	// intake folder: how long after the drain's end the folder is empty.
	MoveTailMs float64 `json:"move_tail_ms"`
	// CPU time per message: the daemon's own during the drain, and by
	// whom (the whole machine, Dovecot, this program) in each pass. The
	// machine's less the others' is the kernel's work outside them.
	DaemonCPUMs float64  `json:"daemon_cpu_ms_per_message"`
	DrainCPU    CPUShare `json:"drain_cpu"`
	RawCPU      CPUShare `json:"raw_fetch_cpu"`
	CommandsCPU CPUShare `json:"imap_commands_only_cpu"`
}

// fillBacklog puts the generated backlog in INBOX (once per bench run).
func fillBacklog(o options, s *stack, res *Results) error {
	if err := s.moveAll("Backlog", "INBOX", "Processed", "Quarantine"); err != nil {
		return err
	}
	start := time.Now()
	bytes, kinds, err := s.fill(o.seed, o.n)
	if err != nil {
		return err
	}
	d := time.Since(start)
	res.Backlog.Fill = throughput(o.n, bytes, d)
	res.Backlog.Kinds = map[string]int{}
	for k, v := range kinds {
		res.Backlog.Kinds[string(k)] = v
	}
	log.Printf("backlog: appended %d messages, %.1f MB in %.1fs (%v)", o.n, float64(bytes)/1e6, d.Seconds(), kinds)
	return nil
}

// backlog measures raw fetch against caseintake's drain, alternating
// transports, o.runs times.
func backlog(o options, s *stack, res *Results) error {
	if err := fillBacklog(o, s, res); err != nil {
		return err
	}
	if o.want("profile") {
		return profileDrain(o, s, res)
	}
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.srv.Close()
	res.Backlog.Runs = map[string][]BacklogRun{}
	for r := 1; r <= o.runs; r++ {
		for _, sec := range []security{secPlain, secTLS} {
			br, err := backlogRun(o, s, sink, sec, r)
			if err != nil {
				return fmt.Errorf("run %d %s: %w", r, sec, err)
			}
			res.Backlog.Runs[string(sec)] = append(res.Backlog.Runs[string(sec)], br)
		}
	}
	res.Backlog.summarise()
	return nil
}

// quiesce writes back what earlier steps left dirty (the previous
// drain's raw files and their removal, the folder moves), so that each
// timed step starts with an idle disk instead of paying for the last one.
func quiesce() {
	start := time.Now()
	syscall.Sync()
	if d := time.Since(start); d > 100*time.Millisecond {
		log.Printf("waited %.1fs for the disk to write back earlier steps", d.Seconds())
	}
}

func backlogRun(o options, s *stack, sink *sink, sec security, r int) (BacklogRun, error) {
	var br BacklogRun
	quiesce()
	meter, err := startCPU(s)
	if err != nil {
		return br, err
	}
	msgs, bytes, d, err := s.rawFetch(sec, "INBOX")
	if err != nil {
		return br, fmt.Errorf("raw fetch: %w", err)
	}
	if br.RawCPU, err = meter.stop(msgs); err != nil {
		return br, err
	}
	if msgs != o.n {
		return br, fmt.Errorf("raw fetch saw %d messages, want %d", msgs, o.n)
	}
	br.Raw = throughput(msgs, bytes, d)
	log.Printf("run %d %-4s raw fetch: %.0f msg/s, %.1f MB/s, CPU per message %s", r, sec, br.Raw.MsgsPS, br.Raw.MBPS, br.RawCPU)

	dir := filepath.Join(o.out, fmt.Sprintf("backlog-%d-%s", r, sec))
	os.RemoveAll(dir)
	dm, err := writeConfig(s, dir, sec, sink.port)
	if err != nil {
		return br, err
	}
	quiesce()
	if meter, err = startCPU(s); err != nil {
		return br, err
	}
	if err := dm.start(o.bin); err != nil {
		return br, err
	}
	end, got, werr := dm.waitMoved(o.n, o.drainLimit)
	drainCPU, berr := meter.stop(got)
	cpu, cerr := dm.cpuTime()
	hwm, herr := dm.procStatus("VmHWM")
	// Mapped database pages count in RSS too; say how much of it they are.
	anon, _ := dm.procStatus("RssAnon")
	file, _ := dm.procStatus("RssFile")
	if err := dm.stop(); err != nil {
		return br, err
	}
	if werr != nil {
		return br, fmt.Errorf("drain: %w (log %s)", werr, dm.logPath)
	}
	if herr != nil {
		return br, herr
	}
	if err := errors.Join(berr, cerr); err != nil {
		return br, err
	}
	if got == 0 {
		return br, fmt.Errorf("drain: no message processed in %v (log %s)", o.drainLimit, dm.logPath)
	}
	// The log's word checked against the server's: the folders hold what
	// the daemon says it moved there.
	if _, err := s.waitCount(got, 10*time.Second, "Processed", "Quarantine"); err != nil {
		return br, fmt.Errorf("drain: the log says %d messages were moved: %w", got, err)
	}
	// A drain cut at the time limit counts what was done by then (the
	// bytes pro rata): a rate over the first part of the backlog.
	// A drain ends at its last commit (issue #6: "from start to last
	// commit"); the last move follows it, and is reported beside it. A
	// drain cut short counts the messages moved by then.
	br.Processed = got
	last := end.Committed
	if got < o.n {
		last = end.Moved
	}
	br.MoveTailMs = float64(end.Moved.Sub(end.Committed).Microseconds()) / 1000
	br.Drain = throughput(got, bytes*int64(got)/int64(o.n), last.Sub(dm.started))
	br.Ratio = br.Drain.MsgsPS / br.Raw.MsgsPS
	br.PeakRSS = hwm
	br.Load = loadavg()
	br.DaemonCPUMs, br.DrainCPU = cpu.Seconds()*1000/float64(got), drainCPU
	log.Printf("run %d %-4s drain (%d of %d): %.0f msg/s, %.1f MB/s, ratio %.3f, last move %.0f ms after the last commit, CPU per message %.3f ms daemon, %s, peak RSS %.1f MB (at the end %.1f MB anonymous, %.1f MB file-backed), load %s",
		r, sec, got, o.n, br.Drain.MsgsPS, br.Drain.MBPS, br.Ratio, br.MoveTailMs, br.DaemonCPUMs, br.DrainCPU, float64(hwm)/1e6, float64(anon)/1e6, float64(file)/1e6, br.Load)
	// Everything back into INBOX for the next pass.
	if err := s.moveAll("INBOX", "Processed", "Quarantine"); err != nil {
		return br, err
	}
	// After the drain, so that the drain meets the folder as it always did.
	quiesce()
	if meter, err = startCPU(s); err != nil {
		return br, err
	}
	n, d, err := s.commandsOnly(sec, "INBOX", "Processed", 500, 10)
	if err != nil {
		return br, fmt.Errorf("IMAP commands only: %w", err)
	}
	if n != o.n {
		return br, fmt.Errorf("IMAP commands only moved %d messages, want %d", n, o.n)
	}
	if br.CommandsCPU, err = meter.stop(n); err != nil {
		return br, err
	}
	br.Commands = throughput(n, bytes, d)
	log.Printf("run %d %-4s IMAP commands only: %.0f msg/s, ratio %.3f to the raw fetch, CPU per message %s", r, sec, br.Commands.MsgsPS, br.Commands.MsgsPS/br.Raw.MsgsPS, br.CommandsCPU)
	if err := s.moveAll("INBOX", "Processed"); err != nil {
		return br, err
	}
	if !o.keep {
		os.RemoveAll(filepath.Join(dir, "data"))
	}
	return br, nil
}
