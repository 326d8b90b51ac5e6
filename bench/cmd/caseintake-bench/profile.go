package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync/atomic"
	"time"

	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// Profile is the in-process drain: the daemon's parts wired as serve wires
// them, under pprof, with the wall time split where it goes.
type Profile struct {
	Security      string  `json:"imap_security"`
	Msgs          int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MsgsPS        float64 `json:"messages_per_s"`
	StageSeconds  float64 `json:"in_stage_seconds"`        // intake.Pipeline.Stage: raw store, parse
	BodySeconds   float64 `json:"reading_body_seconds"`    // inside Stage, waiting for the body from the connection
	CommitSeconds float64 `json:"in_commit_seconds"`       // intake.Pipeline.Commit: decide, one transaction (the sync is in Prepare, beside it)
	Batches       int64   `json:"batches"`                 // Commit calls
	OutsideSecs   float64 `json:"outside_handler_seconds"` // worker: SELECT, SEARCH, metadata FETCH, FETCH start, MOVE
	CPUProfile    string  `json:"cpu_profile"`
	HeapProfile   string  `json:"heap_profile"`
	AllocsPerMsg  float64 `json:"bytes_allocated_per_message"`
}

type timedHandler struct {
	h                   mailbox.Handler
	stage, commit, body atomic.Int64
	n, batches          atomic.Int64
}

type timedBody struct {
	r io.Reader
	t *atomic.Int64
}

func (b timedBody) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := b.r.Read(p)
	b.t.Add(int64(time.Since(start)))
	return n, err
}

func (t *timedHandler) Stage(ctx context.Context, in *mailbox.Incoming) mailbox.Staged {
	start := time.Now()
	if in.Body != nil {
		in.Body = timedBody{in.Body, &t.body}
	}
	v := t.h.Stage(ctx, in)
	t.stage.Add(int64(time.Since(start)))
	t.n.Add(1)
	return v
}

// Prepare passes the batch on as the daemon's wiring does; its time (the
// raw store's sync) runs beside the commit before and is not in
// CommitSeconds.
func (t *timedHandler) Prepare(ctx context.Context, batch []mailbox.Staged) {
	if p, ok := t.h.(mailbox.Preparer); ok {
		p.Prepare(ctx, batch)
	}
}

func (t *timedHandler) Commit(ctx context.Context, batch []mailbox.Staged) []mailbox.Disposition {
	start := time.Now()
	ds := t.h.Commit(ctx, batch)
	t.commit.Add(int64(time.Since(start)))
	t.batches.Add(1)
	return ds
}

func profileDrain(o options, s *stack, res *Results) error {
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.srv.Close()
	dir := filepath.Join(o.out, "profile")
	os.RemoveAll(dir)
	dm, err := writeConfig(s, dir, o.profileSec, sink.port)
	if err != nil {
		return err
	}
	cfg, err := config.Load(dm.cfg)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	logPath := filepath.Join(dir, "caseintake.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	lg := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	renderer, err := notify.NewRenderer(cfg.SMTP, cfg.Notify)
	if err != nil {
		return err
	}
	renderer.SetMessageIDKey(st.MessageIDKey())
	sender, err := notify.NewSender(cfg.SMTP)
	if err != nil {
		return err
	}
	notifier := notify.NewWorker(st, renderer, sender, lg)
	pipe := intake.New(st, renderer, intake.Options{ReopenWindow: cfg.Intake.ReopenWindow,
		Urgency: classify.NewUrgency(classify.DefaultUrgentPhrases()), OwnAddresses: []string{"support@example.test"}}, lg, notifier.Kick)
	th := &timedHandler{h: pipe}
	w := mailbox.NewWorker(cfg.Mailboxes[0], th, intake.Cursors(st), lg)

	cpuPath := filepath.Join(dir, "cpu.pprof")
	cpu, err := os.Create(cpuPath)
	if err != nil {
		return err
	}
	defer cpu.Close()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return err
	}
	// The execution trace shows the off-CPU time the CPU profile cannot:
	// go tool trace -pprof=syscall|sync|net|sched trace.out > x.pprof.
	tracePath := filepath.Join(dir, "trace.out")
	tf, err := os.Create(tracePath)
	if err != nil {
		return err
	}
	defer tf.Close()
	if err := trace.Start(tf); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { notifier.Run(ctx); done <- struct{}{} }()
	go func() { w.Run(ctx); done <- struct{}{} }()
	start := time.Now()
	end, moved, werr := followMoves(logPath, start.Add(20*time.Minute), o.n)
	if werr == nil && moved < o.n {
		werr = fmt.Errorf("%d of %d messages moved in 20 minutes (log %s)", moved, o.n, logPath)
	}
	pprof.StopCPUProfile()
	trace.Stop()
	runtime.ReadMemStats(&ms1)
	heapPath := filepath.Join(dir, "heap.pprof")
	if hf, err := os.Create(heapPath); err == nil {
		pprof.Lookup("allocs").WriteTo(hf, 0)
		hf.Close()
	}
	cancel()
	<-done
	<-done
	if werr != nil {
		return werr
	}
	p := &Profile{Security: string(o.profileSec), Msgs: o.n, Seconds: end.Committed.Sub(start).Seconds(), CPUProfile: cpuPath, HeapProfile: heapPath,
		StageSeconds: time.Duration(th.stage.Load()).Seconds(), BodySeconds: time.Duration(th.body.Load()).Seconds(),
		CommitSeconds: time.Duration(th.commit.Load()).Seconds(), Batches: th.batches.Load(),
		AllocsPerMsg: float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(o.n)}
	p.MsgsPS = float64(p.Msgs) / p.Seconds
	p.OutsideSecs = p.Seconds - p.StageSeconds - p.CommitSeconds
	log.Printf("profile: %d messages in %.1fs (%.0f msg/s): in Stage %.1fs (of which reading the body %.1fs), in Commit %.1fs (%d batches), outside the handler %.1fs; %.0f KB allocated per message; %s %s",
		p.Msgs, p.Seconds, p.MsgsPS, p.StageSeconds, p.BodySeconds, p.CommitSeconds, p.Batches, p.OutsideSecs, p.AllocsPerMsg/1024, cpuPath, heapPath)
	fmt.Printf("inspect: go tool pprof -top %s; go tool trace -pprof=syscall %s > syscall.pprof (or sync, net, sched)\n", cpuPath, tracePath)
	res.Backlog.Profile = p
	if err := s.moveAll("INBOX", "Processed", "Quarantine"); err != nil {
		return err
	}
	if !o.keep {
		os.RemoveAll(filepath.Join(dir, "data"))
	}
	return nil
}
