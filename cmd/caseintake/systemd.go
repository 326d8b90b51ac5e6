package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"
)

// readyTimeout bounds the wait for every mailbox worker's first connection
// attempt before READY=1 is sent anyway (systemd's start timeout is longer).
const readyTimeout = 60 * time.Second

// supervisor reports the daemon's state to systemd (Type=notify): READY=1
// once every mailbox worker has connected or reported its error, STATUS=
// lines with each mailbox's state, WATCHDOG=1 while every worker runs, and
// STOPPING=1 on shutdown. Without NOTIFY_SOCKET it sends nothing.
type supervisor struct {
	log  *slog.Logger
	pool *mailboxPool
	now  func() time.Time // the clock workers' progress is judged by; time.Now when nil
}

func (s *supervisor) notify(state string) {
	if _, err := sdaemon.SdNotify(false, state); err != nil {
		s.log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// status is one line with every mailbox's state, for STATUS= and logs.
func (s *supervisor) status() string {
	workers := s.pool.snapshot()
	parts := make([]string, len(workers))
	for i, w := range workers {
		st := w.worker.Status()
		switch {
		case st.Connected:
			parts[i] = w.cfg.Name + ": connected"
		case st.LastError != "":
			parts[i] = w.cfg.Name + ": " + st.LastError
		default:
			parts[i] = w.cfg.Name + ": connecting"
		}
	}
	return strings.Join(parts, "; ")
}

// settled reports whether every worker has connected or failed once.
func (s *supervisor) settled() bool {
	for _, w := range s.pool.snapshot() {
		if st := w.worker.Status(); !st.Connected && st.LastError == "" {
			return false
		}
	}
	return true
}

// run sends READY=1 when the workers have settled (or readyTimeout
// passed), then STATUS= on every change and WATCHDOG=1 at half the
// watchdog interval while all workers run, until ctx ends.
func (s *supervisor) run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(readyTimeout)
	for !s.settled() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	last := s.status()
	s.notify(sdaemon.SdNotifyReady + "\nSTATUS=" + last)
	s.log.Info("ready", "status", last)

	watchdog, err := sdaemon.SdWatchdogEnabled(false)
	if err != nil {
		s.log.Warn("systemd watchdog settings unreadable; not feeding it", "err", err)
	}
	feed := time.Duration(0)
	if watchdog > 0 {
		feed = watchdog / 2
	}
	lastFeed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if now := s.status(); now != last {
			last = now
			s.notify("STATUS=" + now)
		}
		if feed > 0 && time.Since(lastFeed) >= feed {
			if dead := s.deadWorkers(); len(dead) == 0 {
				s.notify(sdaemon.SdNotifyWatchdog)
				lastFeed = time.Now()
			} else {
				s.log.Error("mailbox worker(s) stopped or wedged; no longer feeding the systemd watchdog, which will restart the service", "mailboxes", dead)
			}
		}
	}
}

// deadWorkers names the mailboxes whose worker has returned or is wedged.
func (s *supervisor) deadWorkers() []string {
	var dead []string
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	for _, w := range s.pool.snapshot() {
		since, wedged := w.worker.Wedged(now)
		switch {
		case !w.alive:
			dead = append(dead, w.cfg.Name)
		case wedged:
			dead = append(dead, fmt.Sprintf("%s (no progress since %s)", w.cfg.Name, since.Format(time.RFC3339)))
		}
	}
	return dead
}

func (s *supervisor) stopping() {
	s.notify(sdaemon.SdNotifyStopping + "\nSTATUS=stopping: finishing the messages in hand")
}

func (s *supervisor) reloading() { s.notify(sdaemon.SdNotifyReloading) }

func (s *supervisor) reloaded() { s.notify(sdaemon.SdNotifyReady + "\nSTATUS=" + s.status()) }
