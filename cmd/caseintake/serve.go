package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/lifecycle"
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
			log, flush := newLogger(cfg.Log, os.Stderr)
			defer flush()
			return serve(cmd.Context(), cfg, log, serveOptions{reload: func() (*config.Config, error) { return loadConfig(cmd) }})
		},
	}
}

// daemon is the running set of parts.
type daemon struct {
	store    *store.Store
	notifier *notify.Worker
	jobs     *lifecycle.Worker // archive, auto-close, due notices
	events   *eventMetrics
	pipeline *intake.Pipeline
	api      *http.Server
	apiLn    net.Listener
}

// serveOptions are the optional hooks of serve.
type serveOptions struct {
	// ready is called with the API address once everything is started.
	ready func(apiAddr string)
	// reload loads the config again on SIGHUP; nil ignores SIGHUP.
	reload func() (*config.Config, error)
}

// openStore opens the store, saying so when it upgrades an older one
// first: on a big store that takes minutes before the daemon starts, in
// the log and in systemctl status.
func openStore(dataDir string, log *slog.Logger) (*store.Store, error) {
	var began time.Time
	st, err := store.Open(dataDir, store.OnUpgrade(func(u store.Upgrade) {
		began = time.Now()
		log.Info("upgrading the database to a newer schema before starting: it reads every case once, about half a minute a million cases; let it finish (stopped, it starts over)",
			"data_dir", dataDir, "from_schema", u.From, "to_schema", u.To, "cases", u.Cases)
		if _, err := sdaemon.SdNotify(false, fmt.Sprintf("STATUS=upgrading the database (schema %d to %d, %d cases)", u.From, u.To, u.Cases)); err != nil {
			log.Warn("systemd notify failed", "err", err)
		}
	}))
	if err == nil && !began.IsZero() {
		log.Info("database upgraded", "data_dir", dataDir, "took", time.Since(began).Round(time.Millisecond).String())
	}
	return st, err
}

// serve runs the daemon until ctx ends.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, opts serveOptions) error {
	st, err := openStore(cfg.DataDir, log)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pool := newMailboxPool(ctx, nil, intake.Cursors(st), log.With("component", "mailbox"))
	d, err := assemble(cfg, st, pool, log)
	if err != nil {
		return err
	}
	pool.handler = d.events.instrument(d.pipeline)
	sup := &supervisor{log: log, pool: pool}
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.notifier.Run(ctx) })
	wg.Go(func() { _ = d.jobs.Run(ctx) })
	pool.apply(cfg.Mailboxes)
	go sup.run(ctx)
	apiErr := make(chan error, 1)
	go func() { apiErr <- d.api.Serve(d.apiLn) }()
	log.Info("caseintake started", "mailboxes", len(cfg.Mailboxes), "api", d.apiLn.Addr().String(), "data_dir", cfg.DataDir)
	if opts.ready != nil {
		opts.ready(d.apiLn.Addr().String())
	}
	hup := make(chan os.Signal, 1)
	if opts.reload != nil {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	running := cfg
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err = <-apiErr:
			err = fmt.Errorf("api.listen %s: %w", cfg.API.Listen, err)
			log.Error("API server failed; stopping", "err", err)
			break wait
		case <-hup:
			sup.reloading()
			running = reloadConfig(running, opts.reload, pool, log)
			sup.reloaded()
		}
	}
	log.Info("stopping: finishing the messages in hand")
	sup.stopping()
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), stopTimeout)
	defer done()
	_ = d.api.Shutdown(shutdownCtx)
	stopped := make(chan struct{})
	go func() { pool.wait(); wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
		log.Info("stopped")
	case <-shutdownCtx.Done():
		log.Error("workers did not stop in time; exiting anyway (unacknowledged mail is fetched again at the next start)")
	}
	return err
}

// reloadConfig applies a new config on SIGHUP: mailboxes are added, removed
// or restarted one by one, the others keep running. An invalid config is
// refused and the running one stays. It returns the config now in force.
func reloadConfig(running *config.Config, load func() (*config.Config, error), pool *mailboxPool, log *slog.Logger) *config.Config {
	next, err := load()
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			log.Error("config reload refused; the running config stays in force", "file", cerr.File, "problems", cerr.Problems)
		} else {
			log.Error("config reload refused; the running config stays in force", "err", err)
		}
		return running
	}
	added, removed, changed := pool.apply(next.Mailboxes)
	log.Info("config reloaded", "mailboxes_added", added, "mailboxes_removed", removed, "mailboxes_restarted", changed)
	a, b := *running, *next
	a.Mailboxes, b.Mailboxes = nil, nil
	if !reflect.DeepEqual(a, b) {
		log.Warn("config changes outside mailboxes (smtp, notify, api, intake, data_dir, log) take effect at the next restart")
	}
	return next
}

// assemble builds the parts from the config.
func assemble(cfg *config.Config, st *store.Store, pool *mailboxPool, log *slog.Logger) (*daemon, error) {
	renderer, err := notify.NewRenderer(cfg.SMTP, cfg.Notify)
	if err != nil {
		return nil, err
	}
	renderer.SetMessageIDKey(st.MessageIDKey())
	sender, err := notify.NewSender(cfg.SMTP)
	if err != nil {
		return nil, err
	}
	d := &daemon{store: st, notifier: notify.NewWorker(st, renderer, sender, log.With("component", "notify")), events: newEventMetrics()}
	d.notifier.Observe(d.events.smtpResult)
	targets, err := lifecycle.Targets(cfg.Lifecycle)
	if err != nil {
		return nil, err
	}
	renderer.SetTargets(targets)
	d.jobs = lifecycle.New(st, renderer, lifecycle.Options{ReopenWindow: cfg.Intake.ReopenWindow,
		AutoCloseAfter: cfg.Lifecycle.AutoCloseAfter, AtRiskLead: cfg.Lifecycle.AtRiskLead,
		Interval: cfg.Lifecycle.Interval}, log.With("component", "lifecycle"), d.notifier.Kick)
	phrases := cfg.Intake.UrgentPhrases
	if len(phrases) == 0 {
		phrases = classify.DefaultUrgentPhrases()
	}
	var own []string
	for _, m := range cfg.Mailboxes {
		own = append(own, m.Address)
	}
	d.pipeline = intake.New(st, renderer, intake.Options{
		ReopenWindow: cfg.Intake.ReopenWindow,
		Urgency:      classify.NewUrgency(phrases),
		OwnAddresses: own,
		// Loop guards (issue #5): acknowledgement caps and Received limit.
		AckLimit:       cfg.Intake.AckLimitPerRecipient,
		GlobalAckLimit: cfg.Intake.AckLimitGlobal,
		MaxReceived:    cfg.Intake.MaxReceived,
	}, log.With("component", "intake"), d.notifier.Kick)
	d.apiLn, err = listen(cfg.API.Listen)
	if err != nil {
		return nil, err
	}
	srv := api.NewServer(st, renderer, cfg.API.Token, log.With("component", "api"), d.notifier.Kick)
	srv.SetQuarantineDesk(quarantineDesk{pipeline: d.pipeline})
	h := &health{dataDir: cfg.DataDir, store: st, pool: pool, events: d.events}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	// /readyz, like /healthz, answers without a token: probes rarely carry
	// one, and it says only whether mailboxes, store and outbox work.
	mux.HandleFunc("GET /readyz", h.serveReadyz)
	// /metrics needs the token: mailbox names and volumes are operational
	// detail, and Prometheus sends bearer tokens (authorization.credentials_file).
	mux.Handle("GET /metrics", api.RequireToken(cfg.API.Token, h.metricsHandler()))
	mux.Handle("GET "+api.BackupPath, api.RequireToken(cfg.API.Token, serveBackup(st)))
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
