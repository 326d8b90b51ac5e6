package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// stopTimeout bounds a graceful stop; it stays below systemd's
// TimeoutStopSec.
const stopTimeout = 20 * time.Second

func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log, os.Stderr)
			return serve(cmd.Context(), cfg, log, nil)
		},
	}
}

// newLogger builds the daemon's structured logger: JSON unless stderr is a
// terminal (or the config says otherwise).
func newLogger(c config.Log, w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// daemon is the running set of parts.
type daemon struct {
	store    *store.Store
	notifier *notify.Worker
	workers  []*mailbox.Worker
	api      *http.Server
	apiLn    net.Listener
}

// serve runs the daemon until ctx ends. ready, if set, is called with the
// API address once everything is started.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(apiAddr string)) error {
	st, err := store.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := assemble(cfg, st, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sup := &supervisor{log: log, workers: d.workers}
	for _, m := range cfg.Mailboxes {
		sup.names = append(sup.names, m.Name)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.notifier.Run(ctx) })
	for _, w := range d.workers {
		sup.running.Add(1)
		wg.Go(func() {
			defer sup.running.Add(-1)
			if err := w.Run(ctx); err != nil {
				log.Error("mailbox worker stopped", "err", err)
			}
		})
	}
	go sup.run(ctx)
	apiErr := make(chan error, 1)
	go func() { apiErr <- d.api.Serve(d.apiLn) }()
	log.Info("caseintake started", "mailboxes", len(d.workers), "api", d.apiLn.Addr().String(), "data_dir", cfg.DataDir)
	if ready != nil {
		ready(d.apiLn.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-apiErr:
		err = fmt.Errorf("api.listen %s: %w", cfg.API.Listen, err)
		log.Error("API server failed; stopping", "err", err)
	}
	log.Info("stopping: finishing the messages in hand")
	sup.stopping()
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), stopTimeout)
	defer done()
	_ = d.api.Shutdown(shutdownCtx)
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
		log.Info("stopped")
	case <-shutdownCtx.Done():
		log.Error("workers did not stop in time; exiting anyway (unacknowledged mail is fetched again at the next start)")
	}
	return err
}

// assemble builds the parts from the config.
func assemble(cfg *config.Config, st *store.Store, log *slog.Logger) (*daemon, error) {
	renderer, err := notify.NewRenderer(cfg.SMTP, cfg.Notify)
	if err != nil {
		return nil, err
	}
	sender, err := notify.NewSender(cfg.SMTP)
	if err != nil {
		return nil, err
	}
	d := &daemon{store: st, notifier: notify.NewWorker(st, sender, log.With("component", "notify"))}
	phrases := cfg.Intake.UrgentPhrases
	if len(phrases) == 0 {
		phrases = classify.DefaultUrgentPhrases()
	}
	var own []string
	for _, m := range cfg.Mailboxes {
		own = append(own, m.Address)
	}
	pipeline := intake.New(st, renderer, intake.Options{
		ReopenWindow: cfg.Intake.ReopenWindow,
		Urgency:      classify.NewUrgency(phrases),
		OwnAddresses: own,
	}, log.With("component", "intake"), d.notifier.Kick)
	cursors := intake.Cursors(st)
	for _, m := range cfg.Mailboxes {
		d.workers = append(d.workers, mailbox.NewWorker(m, pipeline, cursors, log.With("component", "mailbox")))
	}
	d.apiLn, err = listen(cfg.API.Listen)
	if err != nil {
		return nil, err
	}
	srv := api.NewServer(st, renderer, cfg.API.Token, log.With("component", "api"), d.notifier.Kick)
	h := &health{cfg: cfg, store: st, workers: d.workers}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	// /readyz, like /healthz, answers without a token: probes rarely carry
	// one, and it says only whether mailboxes, store and outbox work.
	mux.HandleFunc("GET /readyz", h.serveReadyz)
	// /metrics needs the token: mailbox names and volumes are operational
	// detail, and Prometheus sends bearer tokens (authorization.credentials_file).
	mux.Handle("GET /metrics", requireToken(cfg.API.Token, h.metricsHandler()))
	d.api = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return d, nil
}

func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("api.listen %s: %w", addr, err)
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("api.listen %s: %w", addr, err)
		}
		return ln, os.Chmod(path, 0o660)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api.listen %s: %w (is another caseintake running?)", addr, err)
	}
	return ln, nil
}
