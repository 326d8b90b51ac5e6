package main

import (
	"context"
	"log/slog"
	"reflect"
	"sync"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/mailbox"
)

// mailboxPool runs one worker per configured mailbox and, on a config
// reload, starts, stops or restarts only the mailboxes that changed.
type mailboxPool struct {
	ctx     context.Context // the daemon's lifetime
	handler mailbox.Handler
	cursors mailbox.CursorStore
	log     *slog.Logger

	mu     sync.Mutex
	order  []string
	byName map[string]*poolEntry
	wg     sync.WaitGroup
}

type poolEntry struct {
	cfg    config.Mailbox
	worker *mailbox.Worker
	cancel context.CancelFunc
	done   chan struct{}
}

// poolWorker is a snapshot of one running mailbox.
type poolWorker struct {
	cfg    config.Mailbox
	worker *mailbox.Worker
	// alive is false when the worker's Run returned on its own, which
	// only happens when it is stopped: a dead worker stops the watchdog.
	alive bool
}

func newMailboxPool(ctx context.Context, h mailbox.Handler, cs mailbox.CursorStore, log *slog.Logger) *mailboxPool {
	return &mailboxPool{ctx: ctx, handler: h, cursors: cs, log: log, byName: map[string]*poolEntry{}}
}

func (p *mailboxPool) start(cfg config.Mailbox) {
	ctx, cancel := context.WithCancel(p.ctx)
	e := &poolEntry{cfg: cfg, cancel: cancel, done: make(chan struct{}),
		worker: mailbox.NewWorker(cfg, p.handler, p.cursors, p.log)}
	p.byName[cfg.Name] = e
	p.order = append(p.order, cfg.Name)
	p.wg.Go(func() {
		defer close(e.done)
		if err := e.worker.Run(ctx); err != nil {
			p.log.Error("mailbox worker stopped", "mailbox", cfg.Name, "err", err)
		}
	})
}

// stop ends one worker (it finishes the message in hand) and waits for it.
func (p *mailboxPool) stop(name string) {
	e := p.byName[name]
	e.cancel()
	<-e.done
	delete(p.byName, name)
	for i, n := range p.order {
		if n == name {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
}

// apply makes the running workers match cfgs and says what it did.
func (p *mailboxPool) apply(cfgs []config.Mailbox) (added, removed, changed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]config.Mailbox{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	for _, name := range append([]string(nil), p.order...) {
		c, keep := want[name]
		switch {
		case !keep:
			p.stop(name)
			removed = append(removed, name)
		case !reflect.DeepEqual(c, p.byName[name].cfg):
			p.stop(name)
			p.start(c)
			changed = append(changed, name)
		}
	}
	for _, c := range cfgs {
		if _, running := p.byName[c.Name]; !running {
			p.start(c)
			added = append(added, c.Name)
		}
	}
	return added, removed, changed
}

// snapshot lists the running mailboxes in config order.
func (p *mailboxPool) snapshot() []poolWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]poolWorker, 0, len(p.order))
	for _, name := range p.order {
		e := p.byName[name]
		alive := true
		select {
		case <-e.done:
			alive = false
		default:
		}
		out = append(out, poolWorker{cfg: e.cfg, worker: e.worker, alive: alive})
	}
	return out
}

// wait blocks until every worker has returned (after the daemon's context ended).
func (p *mailboxPool) wait() { p.wg.Wait() }
