package mailbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/oauth"
)

const (
	minStepTimeout    = 2 * time.Minute
	defaultBackoffMin = time.Second
	defaultBackoffMax = 5 * time.Minute
	defaultStopGrace  = 10 * time.Second
	// defaultBatch bounds the UIDs taken per poll cycle; a full batch is
	// followed at once by the next one.
	defaultBatch = 500
	// lookaheadBatches is how many batches' UIDs one search takes: the
	// batches of a backlog are taken from them without a SEARCH each (a
	// round trip a batch held up the download), and they stay small (a
	// few tens of KB). Metadata is fetched a batch at a time (see
	// metaAhead).
	lookaheadBatches = 10
	// maxFlights bounds the batches of a backlog in flight on the mover
	// (being committed, waiting to be moved or moving) before the next
	// download waits for the oldest: the download runs ahead of moves
	// that lag, but not without end.
	maxFlights = 6
	// defaultBatchBytes bounds a batch by the size of its messages (one
	// message more than that still makes a batch of one).
	defaultBatchBytes = 32 << 20
)

var (
	errStepDeadline = errors.New("server did not answer before the poll deadline; connection closed")
	errStopGrace    = errors.New("stop grace period over")
	errBodyClosed   = errors.New("mailbox: Incoming.Body read after Handle returned")
	errServerClosed = errors.New("connection closed by the server")
	errPrevNotMoved = errors.New("batch not moved: moving the batch before it failed")
)

// Worker reads one configured mailbox: it hands every new message of the
// folder to a Handler and acknowledges, quarantines or leaves it as the
// Handler says. Create it with NewWorker and call Run once.
type Worker struct {
	cfg  config.Mailbox
	h    Handler
	cs   CursorStore
	log  *slog.Logger
	kick chan struct{}

	// Timings; the package's tests shorten some of them.
	backoffMin  time.Duration
	backoffMax  time.Duration
	stopGrace   time.Duration
	stepTimeout time.Duration
	batch       int
	batchBytes  int64
	// event, when set, is told "connected", "disconnected" and "cycle"
	// (after each successful poll cycle). Test hook.
	event func(string)

	mu   sync.Mutex
	st   Status
	beat time.Time // last sign of progress; see Wedged
}

// NewWorker returns a worker for one mailbox. Keys left empty get the
// config defaults (config.Mailbox.ApplyDefaults); a negative
// MaxMessageSize means no limit. log may be nil.
func NewWorker(cfg config.Mailbox, h Handler, cs CursorStore, log *slog.Logger) *Worker {
	cfg.ApplyDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{
		cfg:         cfg,
		h:           h,
		cs:          cs,
		log:         log.With("mailbox", cfg.Name),
		kick:        make(chan struct{}, 1),
		backoffMin:  defaultBackoffMin,
		backoffMax:  defaultBackoffMax,
		stopGrace:   defaultStopGrace,
		stepTimeout: max(2*cfg.PollInterval, minStepTimeout),
		batch:       defaultBatch,
		batchBytes:  defaultBatchBytes,
	}
}

// Kick makes the worker poll now: it ends an idle or sleep at once, and
// cuts short a wait before reconnecting. It never blocks.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// progress notes that the worker's loop moved on.
func (w *Worker) progress() {
	w.mu.Lock()
	w.beat = time.Now()
	w.mu.Unlock()
}

// Wedged reports whether the worker has shown no progress for longer than
// any of its healthy states can last (an idle, a poll step with its
// deadline and stop grace, a backoff), and since when: something it waits
// for without a deadline, a handler stuck on a hung disk say, holds it.
// A worker that has not started is not wedged.
func (w *Worker) Wedged(now time.Time) (since time.Time, wedged bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := w.cfg.PollInterval + 3*w.stepTimeout + w.stopGrace + w.backoffMax
	return w.beat, !w.beat.IsZero() && now.Sub(w.beat) > limit
}

// Status returns a snapshot of the worker's health.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

func (w *Worker) emit(ev string) {
	if w.event != nil {
		w.event(ev)
	}
}

// Run reads the mailbox until ctx is done and then returns nil. Connection
// problems are logged and retried with capped exponential backoff; they
// never end Run. Call Run once per Worker.
func (w *Worker) Run(ctx context.Context) error {
	var (
		delay   time.Duration
		lastLog string // error text last logged at warn level
		rs      runState
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		w.progress()
		connected, healthy, err := w.session(ctx, &rs)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil { // cannot happen: a session ends with an error or ctx
			err = errors.New("session ended")
		}
		if healthy {
			delay, rs.attempts, lastLog = 0, 0, ""
		}
		rs.attempts++
		// Connecting and failing before the first cycle, again and again
		// (say, the folder is missing), is one state: log it once.
		rs.flapping = connected && !healthy
		delay = min(max(2*delay, w.backoffMin), w.backoffMax)
		wait := jitter(delay)

		w.mu.Lock()
		w.st.Connected = false
		w.st.LastError = err.Error()
		w.mu.Unlock()
		w.emit("disconnected")

		// Log when the state or the error changes, not on every attempt.
		attrs := []any{"server", serverAddr(w.cfg.IMAP), "err", err, "attempt", rs.attempts, "retry_in", wait.Round(time.Millisecond)}
		if err.Error() != lastLog {
			w.log.Warn(failureMessage(connected, err), attrs...)
			lastLog = err.Error()
		} else {
			w.log.Debug(failureMessage(connected, err)+" (again)", attrs...)
		}

		w.progress()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// msgLoginRefused is logged when the server answers LOGIN with NO: the
// credentials (or the account) are wrong, which only the operator can fix.
const msgLoginRefused = "IMAP login refused: check imap.username and imap.password_file (or imap.password) of this mailbox; retrying with backoff"

func failureMessage(connected bool, err error) string {
	var (
		imapErr  *imap.Error
		dialErr  *dialError
		refused  *tokenRefused
		tokenErr *oauth.Error
	)
	switch {
	case errors.As(err, &dialErr) && dialErr.stage == stageLogin && errors.As(err, &imapErr):
		return msgLoginRefused
	case errors.As(err, &refused):
		return "IMAP login with the OAuth token refused (err says which token and what to check); retrying with backoff"
	case errors.As(err, &tokenErr):
		return "cannot get an OAuth token for the IMAP login (err says which key to check); retrying with backoff"
	case errors.As(err, &dialErr):
		return "cannot connect to IMAP server"
	case errors.As(err, &imapErr):
		return "IMAP server refused a command; reconnecting"
	case connected:
		return "IMAP connection lost"
	default:
		return "mailbox worker failed"
	}
}

// jitter spreads d over ±20 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sess is one logged-in connection.
type sess struct {
	c       *imapclient.Client
	caps    imap.CapSet
	newMail chan struct{}
	cur     Cursor // in memory, ahead of saved when a save failed
	saved   Cursor
	// held is set once a message of this poll cycle stayed in the folder:
	// the cursor may not pass it, nor anything after it in the cycle.
	held bool
	// flights are the batches handed to the commit and not yet finished,
	// oldest first: the one committing while the next downloads and,
	// with a mover, the one before it, still being moved.
	flights []*inFlight
	// mover is a second connection, open while a backlog drains, that
	// moves each committed batch while the next one downloads on c.
	mover *mover
	// opening delivers the mover being opened (nil if that failed): it
	// is opened as soon as a search finds a backlog, beside the first
	// batch's download.
	opening chan *mover
	// noMover is set once opening the mover failed: this session does
	// without it rather than dial (and warn) again for every batch.
	noMover bool
	// ahead holds the UIDs the last search found (ascending) and not yet
	// taken into a batch; aheadMore is set when the search found more
	// than it looked ahead. The metadata of the first aheadMetaN of them
	// has been fetched into aheadMeta (a UID missing there vanished).
	ahead      []uint32
	aheadMeta  map[uint32]meta
	aheadMetaN int
	aheadMore  bool
	// metaAhead is the next batch's metadata FETCH, sent behind this
	// batch's body FETCH and not yet taken into aheadMeta.
	metaAhead *metaAhead
}

// inFlight is a staged batch being committed, and with a mover moved, in
// the background.
type inFlight struct {
	uids      []uint32
	batch     []staged
	done      map[uint32]bool // left the folder (or were gone) so far
	onMover   bool            // moved on the mover, not by finish
	committed chan struct{}   // closed once the batch is committed
	finished  chan struct{}   // closed once result is set
	result    flightResult

	// A batch on the mover with a next one coming is deferred: it waits
	// to be moved together with that one, its carrier. A MOVE costs
	// Dovecot a part of its own besides each message's (it rewrites the
	// folder's index): about a quarter of its CPU for moving a backlog in
	// MOVEs of 500 goes when they are of 1,000. deferred, carrier and
	// released belong to poll's goroutine. The batch's goroutine, once the
	// batch is committed and the moves before it are done, sets result
	// and prevErr and closes ready; then the carrier moves it and closes
	// carried, or, when none will come, poll closes alone (release) and it
	// moves alone.
	deferred bool
	carrier  *inFlight
	released bool
	prevErr  error
	ready    chan struct{}
	carried  chan struct{}
	alone    chan struct{}
}

// release lets a deferred batch that no next batch will carry move alone.
func (f *inFlight) release() {
	if f.deferred && f.carrier == nil && !f.released {
		f.released = true
		close(f.alone)
	}
}

// flightResult is how a batch in flight ended: its dispositions and,
// when the mover acknowledged it, the outcome of that.
type flightResult struct {
	disps []Disposition
	moved bool
	err   error
}

// mover is the second connection, with the folder selected.
type mover struct {
	c    *imapclient.Client
	caps imap.CapSet
}

// runState is what Run remembers between sessions.
type runState struct {
	ever     bool // connected at least once
	attempts int  // failed sessions since the last healthy one
	flapping bool // the last session connected but failed before a cycle
}

// session connects and polls until the connection fails or ctx ends.
// connected reports that login and setup succeeded, healthy that at least
// one poll cycle completed.
func (w *Worker) session(ctx context.Context, rs *runState) (connected, healthy bool, err error) {
	cur, err := w.cs.LoadCursor(w.cfg.Name)
	if err != nil {
		return false, false, fmt.Errorf("load cursor: %w", err)
	}
	s := &sess{newMail: make(chan struct{}, 1), cur: cur, saved: cur}

	sctx, cancel := context.WithTimeoutCause(ctx, w.stepTimeout, errStepDeadline)
	s.c, s.caps, err = dial(sctx, w.cfg.IMAP, s.newMail)
	if err == nil {
		err = w.prepare(sctx, s)
	}
	cancel()
	if err != nil {
		return false, false, err
	}
	defer s.c.Close()
	defer w.closeMover(s)
	defer w.settle(s)

	w.mu.Lock()
	w.st.Connected = true
	if rs.ever {
		w.st.Reconnects++
	}
	w.mu.Unlock()
	idle := w.cfg.Idle && s.caps.Has(imap.CapIdle)
	attrs := []any{"server", serverAddr(w.cfg.IMAP), "move", s.caps.Has(imap.CapMove),
		"uidplus", s.caps.Has(imap.CapUIDPlus), "idle", idle}
	switch {
	case rs.flapping:
		w.log.Debug("IMAP reconnected", append(attrs, "failed_attempts", rs.attempts)...)
	case rs.ever:
		w.log.Info("IMAP reconnected", append(attrs, "failed_attempts", rs.attempts)...)
	default:
		w.log.Info("IMAP connected", attrs...)
	}
	if !rs.ever && !s.caps.Has(imap.CapMove) && !s.caps.Has(imap.CapUIDPlus) {
		w.log.Warn("server offers neither MOVE nor UIDPLUS: handled messages are copied and flagged \\Deleted, but left in the folder for the server to expunge")
	}
	rs.ever = true
	w.emit("connected")

	var from uint32 // continue above this UID after a full batch
	for {
		w.progress()
		last, more, err := w.poll(ctx, s, from)
		if err != nil {
			return true, healthy, err
		}
		w.progress()
		healthy = true
		w.mu.Lock()
		w.st.LastPoll = time.Now()
		w.mu.Unlock()
		w.emit("cycle")
		if ctx.Err() != nil {
			return true, healthy, nil
		}
		if more {
			from = last
			continue
		}
		from = 0
		if err := w.wait(ctx, s); err != nil {
			return true, healthy, err
		}
		if ctx.Err() != nil {
			return true, healthy, nil
		}
	}
}

// prepare creates the processed and quarantine folders if missing.
func (w *Worker) prepare(ctx context.Context, s *sess) error {
	stop := context.AfterFunc(ctx, func() { s.c.Close() })
	var err error
	for _, f := range []string{w.cfg.ProcessedFolder, w.cfg.QuarantineFolder} {
		if f == w.cfg.Folder {
			continue
		}
		if err = ensureFolder(s.c, f); err != nil {
			break
		}
	}
	if !stop() {
		err = guardErr(ctx, err)
	}
	if err != nil {
		s.c.Close()
	}
	return err
}

// guardErr explains an error caused by the guard closing the connection.
func guardErr(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if err == nil {
		return cause
	}
	return fmt.Errorf("%w (%v)", cause, err)
}

// meta is what the batch FETCH learns about a message.
type meta struct {
	size      int64
	messageID string // only for a message over max_message_size
	date      time.Time
}

// poll runs one step of a poll cycle: at its start a SELECT and a search
// above the cursor, then one batch of what the search found (a backlog
// longer than it looked ahead is searched again where it stopped),
// fetched and staged while the previous batch of the cycle (if any)
// commits. With a mover, that one is moved while this one commits (or
// with it, when it waits to be carried); without, it is moved here once
// both are staged and committed. It returns the highest UID it looked at and
// whether more may be waiting above it (a full batch); the batch of a
// step that answers more is still committing when poll returns.
func (w *Worker) poll(ctx context.Context, s *sess, from uint32) (last uint32, more bool, err error) {
	// This cycle sees everything that arrived so far.
	select {
	case <-s.newMail:
	default:
	}
	select {
	case <-w.kick:
	default:
	}
	// The cursor is saved when the cycle ends, not after every batch of a
	// backlog: a save is an fsync'd transaction on the download's path. A
	// crash that loses one makes the next cycle search from an older UID,
	// which costs nothing: what was moved is gone, and what stayed is
	// recognised by its recorded decision.
	defer func() {
		if !more {
			w.saveCursor(s)
		}
	}()
	if from == 0 {
		s.held = false // a new cycle
	}

	pctx, cancel := context.WithTimeoutCause(ctx, w.stepTimeout, errStepDeadline)
	stop := context.AfterFunc(pctx, func() { s.c.Close() })
	validity := s.cur.UIDValidity
	uids, metas, more, err := w.scan(s, from)
	closed := !stop()
	cancel()
	if closed {
		w.settle(s)
		return 0, false, guardErr(pctx, err)
	}
	if err != nil {
		w.settle(s)
		return 0, false, err
	}
	if s.cur.UIDValidity != validity {
		// The UIDs in flight name other messages now: move none of them,
		// and none on a mover that selected the folder before.
		w.settle(s)
		w.closeMover(s)
	}
	if more && s.mover == nil && !s.noMover && s.opening == nil {
		s.opening = make(chan *mover, 1)
		go func(validity uint32) { s.opening <- w.openMover(ctx, validity) }(s.cur.UIDValidity)
	}

	bctx, release := w.messageContext(ctx)
	defer release()
	stop = context.AfterFunc(bctx, func() { s.c.Close() })
	defer func() {
		if !stop() && err != nil {
			err = guardErr(bctx, err)
		}
		if err != nil {
			w.settle(s)
			w.log.Warn("messages not finished; they will be offered again", "err", err)
		}
	}()
	if len(uids) == 0 || ctx.Err() != nil {
		return 0, false, w.finish(s) // stopping: no new message in hand
	}
	batch, done, err := w.stageBatch(bctx, ctx, s, uids, metas)
	if err != nil {
		return 0, false, err
	}
	// With a mover, the batch before may still be committing: this one's
	// commit waits for it (a reply here may belong to a case opened
	// there), and the next batch downloads meanwhile, so a slow commit
	// (its fsyncs) holds up neither the download nor the CPU. Older ones
	// are committed (some may still be moving): parsed messages are held
	// by at most the batch before (with the one it carries) and this one.
	if err := w.finishAllBut(s, true); err != nil {
		return 0, false, err
	}
	if more && s.mover == nil && !s.noMover {
		s.mover = <-s.opening
		s.opening = nil
		s.noMover = s.mover == nil
	}
	f := &inFlight{uids: uids, batch: batch, done: done, onMover: s.mover != nil,
		committed: make(chan struct{}), finished: make(chan struct{})}
	var prev *inFlight // the batch before, maybe still moving or waiting to be carried
	if n := len(s.flights); n > 0 {
		prev = s.flights[n-1]
	}
	carries := prev != nil && prev.deferred && more
	switch {
	case prev != nil && prev.deferred && !carries:
		// The backlog's last batch: the one before moves now, beside this
		// commit, and this one alone after it, rather than both after it
		// (the end of a backlog waits for its last move).
		prev.release()
	case carries:
		prev.carrier = f
	case f.onMover && more && ctx.Err() == nil:
		f.deferred = true
		f.ready, f.carried, f.alone = make(chan struct{}), make(chan struct{}), make(chan struct{})
	}
	s.flights = append(s.flights, f)
	// The commit outlives this step; it must end durable either way.
	cctx := context.WithoutCancel(ctx)
	go func(m *mover, validity uint32) {
		defer close(f.finished)
		w.prepareBatch(cctx, batch) // beside the commit of the batch before
		if prev != nil {
			<-prev.committed // commits in the order of the batches
		}
		r := flightResult{disps: w.commit(cctx, batch)}
		for i := range batch {
			batch[i].val = nil // the move needs no parsed message
		}
		close(f.committed)
		if m == nil {
			f.result = r
			return
		}
		r.moved = true
		if carries {
			// Moved together with the batch before, which waited for
			// the moves before it.
			<-prev.ready
			pr := prev.result
			if pr.err = prev.prevErr; pr.err != nil {
				r.err = errPrevNotMoved
			} else {
				r.err = w.moveTogether(ctx, m, validity, []*inFlight{prev, f}, [][]Disposition{pr.disps, r.disps})
				pr.err = r.err
			}
			prev.result = pr
			f.result = r
			close(prev.carried)
			return
		}
		// Moves keep the order of the commits, one at a time on the
		// mover: this batch's waits for the one before it.
		var prevErr error
		if prev != nil {
			<-prev.finished
			if prev.result.err != nil {
				prevErr = errPrevNotMoved
			}
		}
		if f.deferred {
			f.result, f.prevErr = r, prevErr
			close(f.ready)
			select {
			case <-f.carried:
				return // the carrier set f.result
			case <-f.alone:
			}
		}
		if r.err = prevErr; r.err == nil {
			r.err = w.moveOn(ctx, m, validity, batch, r.disps, done)
		}
		f.result = r
	}(s.mover, s.cur.UIDValidity)
	if !more || ctx.Err() != nil {
		err := w.finish(s)
		w.closeMover(s)
		return 0, false, err
	}
	return uids[len(uids)-1], true, nil
}

// openMover opens the second connection for a backlog and selects the
// folder on it: moving a batch on c held up the next batch's download.
// Without it (the server refused the connection, or the folder's
// UIDVALIDITY is no longer validity), c moves as before for the rest of
// the session.
func (w *Worker) openMover(ctx context.Context, validity uint32) *mover {
	mctx, cancel := context.WithTimeoutCause(ctx, w.stepTimeout, errStepDeadline)
	defer cancel()
	c, caps, err := dial(mctx, w.cfg.IMAP, nil)
	if err != nil {
		w.log.Warn("cannot open a second connection to move messages during the backlog; moving on the first until the next reconnect", "err", err)
		return nil
	}
	stop := context.AfterFunc(mctx, func() { c.Close() })
	sel, err := c.Select(w.cfg.Folder, nil).Wait()
	if !stop() {
		err = guardErr(mctx, err)
	}
	switch {
	case err != nil:
		w.log.Warn("cannot select the folder on a second connection; moving on the first", "folder", w.cfg.Folder, "err", err)
	case sel.UIDValidity != validity:
		// The next scan on the first connection sees the change too.
		w.log.Info("folder changed (UIDVALIDITY) while opening a second connection; moving on the first", "folder", w.cfg.Folder)
	default:
		w.log.Debug("second connection open: committed batches are moved on it while the backlog downloads")
		return &mover{c: c, caps: caps}
	}
	c.Close()
	return nil
}

// moveOn acknowledges a committed batch on the mover, bounded like a
// message in hand (the step deadline, or the stop grace once ctx ends).
// It selects the folder again first: should its UIDVALIDITY no longer be
// the batch's, the UIDs name other messages and nothing is moved (the
// first connection's next scan starts the folder over).
func (w *Worker) moveOn(ctx context.Context, m *mover, validity uint32, batch []staged, disps []Disposition, done map[uint32]bool) error {
	mctx, release := w.messageContext(ctx)
	defer release()
	stop := context.AfterFunc(mctx, func() { m.c.Close() })
	sel, err := m.c.Select(w.cfg.Folder, nil).Wait()
	switch {
	case err != nil:
		err = fmt.Errorf("select %q on the second connection: %w", w.cfg.Folder, err)
	case sel.UIDValidity == validity:
		err = w.acknowledge(m.c, m.caps, batch, disps, done)
	}
	if !stop() {
		err = guardErr(mctx, err)
	}
	return err
}

// moveTogether is moveOn for batches carried together: one SELECT, and
// one MOVE per destination for all of them.
func (w *Worker) moveTogether(ctx context.Context, m *mover, validity uint32, flights []*inFlight, disps [][]Disposition) error {
	var batch []staged
	var all []Disposition
	for i, f := range flights {
		batch = append(batch, f.batch...)
		all = append(all, disps[i]...)
	}
	done := make(map[uint32]bool, len(batch))
	err := w.moveOn(ctx, m, validity, batch, all, done)
	for _, f := range flights {
		for _, st := range f.batch {
			if done[st.in.UID] {
				f.done[st.in.UID] = true
			}
		}
	}
	return err
}

// closeMover closes the mover's connection, if one is open or opening.
func (w *Worker) closeMover(s *sess) {
	if s.opening != nil {
		go func(opening chan *mover) {
			if m := <-opening; m != nil {
				m.c.Close()
			}
		}(s.opening)
		s.opening = nil
	}
	if s.mover != nil {
		s.mover.c.Close()
		s.mover = nil
	}
}

// finish waits for every batch in flight to be committed and moved (on
// this connection when it had no mover) and advances the cursor past the
// messages that left the folder.
func (w *Worker) finish(s *sess) error {
	return w.finishAllBut(s, false)
}

// finishAllBut is finish for the batches done when keepMoving is set and
// the mover moves them: the newest stays in flight while it is committed
// and moved (with the one before it, when that one waits to be carried),
// and older ones still being moved stay too, up to maxFlights in all, once
// committed. Commits keep their order without this wait: each waits for
// the one before it. (Waiting here for the moves of older batches held up
// the next download and the preparing of the batch just staged, 20-80 ms
// a few times a drain on the bench.)
func (w *Worker) finishAllBut(s *sess, keepMoving bool) error {
	var newest *inFlight
	if n := len(s.flights); n > 0 {
		newest = s.flights[n-1]
	}
	kept := func(f *inFlight) bool { return f.onMover && (f == newest || f.carrier == newest) }
	for len(s.flights) > 0 {
		f := s.flights[0]
		if keepMoving && kept(f) {
			break
		}
		if keepMoving && f.onMover && !closed(f.finished) && len(s.flights) < maxFlights {
			break // moving still; the cursor passes it later
		}
		f.release()
		s.flights = s.flights[1:]
		<-f.finished
		err := f.result.err
		if !f.result.moved {
			err = w.acknowledge(s.c, s.caps, f.batch, f.result.disps, f.done)
		}
		w.advance(s, f.uids, f.done)
		if err != nil {
			return err
		}
	}
	// Of the batches left, only the kept ones may still hold parsed
	// messages (besides the one just staged).
	for _, f := range s.flights {
		if kept(f) {
			break
		}
		f.release()
		<-f.committed
	}
	return nil
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// settle waits for the batches in flight (the mover's go on moving, a
// deferred one alone) without moving anything more on this connection or
// advancing the cursor (the connection is gone or going, or their UIDs
// are void): their messages stay in the folder, and those committed are
// recognised when they are offered again.
func (w *Worker) settle(s *sess) {
	for _, f := range s.flights {
		f.release() // a deferred batch is moved as any other in flight
		<-f.finished
	}
	s.flights = nil
}

// advance moves the cursor over uids (ascending) up to the first that is
// still in the folder.
func (w *Worker) advance(s *sess, uids []uint32, done map[uint32]bool) {
	for _, uid := range uids {
		if !done[uid] {
			s.held = true
		} else if !s.held {
			s.cur.LastUID = uid
		}
	}
}

// scan selects the folder (at the start of a cycle; from > 0 continues a
// backlog), resets the cursor on a new UIDVALIDITY and returns the UIDs
// to look at (ascending, at most one batch) with their metadata, taken
// from the last search while it lasts.
func (w *Worker) scan(s *sess, from uint32) ([]uint32, map[uint32]meta, bool, error) {
	// The next batch of a backlog with a mover is in the folder still
	// selected: selecting it again cost Dovecot a re-read of the folder a
	// batch. A folder recreated meanwhile moves nothing wrongly: the mover
	// selects it again and checks UIDVALIDITY before it moves a batch, and
	// the next cycle starts with a SELECT. (Without a mover, this
	// connection moves, and it selects first as ever.)
	if from == 0 || s.mover == nil {
		sel, err := s.c.Select(w.cfg.Folder, nil).Wait()
		if err != nil {
			return nil, nil, false, fmt.Errorf("select %q: %w", w.cfg.Folder, err)
		}
		if sel.UIDValidity != s.cur.UIDValidity {
			if s.cur.UIDValidity != 0 {
				w.log.Warn("UIDVALIDITY changed: stored UIDs are void, reading the folder from the start",
					"old_uidvalidity", s.cur.UIDValidity, "new_uidvalidity", sel.UIDValidity, "old_last_uid", s.cur.LastUID)
			}
			s.cur = Cursor{UIDValidity: sel.UIDValidity}
			from = 0
		}
	}
	if from == 0 {
		// A metaAhead of the cycle before answers for UIDs no longer
		// looked at; its goroutine reads the answer to the end.
		s.ahead, s.aheadMeta, s.aheadMetaN, s.metaAhead = nil, nil, 0, nil
	}
	if len(s.ahead) == 0 {
		if err := w.search(s, from); err != nil {
			return nil, nil, false, err
		}
	}
	if len(s.ahead) == 0 {
		return nil, nil, false, nil
	}
	if m := s.metaAhead; m != nil {
		s.metaAhead = nil
		if err := w.takeMeta(s, m); err != nil {
			return nil, nil, false, err
		}
	}
	if s.aheadMetaN < min(w.batch, len(s.ahead)) {
		if err := w.takeMeta(s, w.sendMeta(s)); err != nil {
			return nil, nil, false, err
		}
	}
	uids, metas, more := w.takeBatch(s)
	return uids, metas, more, nil
}

// search finds the UIDs above max(cursor, from) in the folder selected,
// up to lookaheadBatches batches of them, and puts them in s.ahead.
func (w *Worker) search(s *sess, from uint32) error {
	above := max(s.cur.LastUID, from)
	if above == ^uint32(0) {
		return nil
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(above+1), 0) // above+1:*
	data, err := s.c.UIDSearch(&imap.SearchCriteria{
		UID: []imap.UIDSet{set},
		// Flagged \Deleted: ours on a server without UIDPLUS, or another
		// client's, on its way out either way.
		NotFlag: []imap.Flag{imap.FlagDeleted},
	}, nil).Wait()
	if err != nil {
		return fmt.Errorf("uid search: %w", err)
	}
	var uids []uint32
	if all, ok := data.All.(imap.UIDSet); ok {
		nums, ok := all.Nums()
		if !ok {
			return errors.New("uid search: server returned a dynamic UID set")
		}
		for _, u := range nums {
			// "n:*" always matches the highest UID, even one below n.
			if uint32(u) > above {
				uids = append(uids, uint32(u))
			}
		}
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	more := false
	if n := lookaheadBatches * w.batch; len(uids) > n {
		uids, more = uids[:n], true
	}
	s.ahead, s.aheadMeta, s.aheadMetaN, s.aheadMore = uids, map[uint32]meta{}, 0, more
	return nil
}

// metaAhead is a metadata FETCH (size and date) of the batch after the
// one downloading, sent right behind that batch's body FETCH: the server
// answers it as soon as the bodies are out, while the daemon still reads
// and parses them, and the next batch's download starts without waiting
// for it. (Fetched in one go before the download, the metadata of a
// backlog's later batches held the first connection 90–165 ms twice in
// a drain of 10,000 messages on the bench.) A goroutine collects the
// answer as it comes, so that the client's reader never waits for it.
type metaAhead struct {
	uids []uint32 // ascending, the next of s.ahead after the first aheadMetaN when sent
	set  imap.UIDSet
	done chan struct{} // closed once msgs and err are set
	msgs []*imapclient.FetchMessageBuffer
	err  error
}

// sendMeta sends the metadata FETCH of the next batch's worth of s.ahead
// after the UIDs whose metadata is known.
func (w *Worker) sendMeta(s *sess) *metaAhead {
	m := &metaAhead{uids: s.ahead[s.aheadMetaN:min(len(s.ahead), s.aheadMetaN+w.batch)], done: make(chan struct{})}
	for _, u := range m.uids {
		m.set.AddNum(imap.UID(u))
	}
	// No ENVELOPE: the server can answer size and date without opening
	// the message (Dovecot spent more on the ENVELOPE of a batch than on
	// moving it), and the handler reads the Message-ID from the body.
	cmd := s.c.Fetch(m.set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true})
	go func() {
		defer close(m.done)
		m.msgs, m.err = cmd.Collect()
	}()
	return m
}

// sendMetaAhead sends the next batch's metadata FETCH, if its UIDs are
// known and it was not sent yet. Called right after a batch's body FETCH
// is sent, so that the server answers it after the bodies.
func (w *Worker) sendMetaAhead(s *sess) {
	if s.metaAhead == nil && s.aheadMetaN < len(s.ahead) {
		s.metaAhead = w.sendMeta(s)
	}
}

// takeMeta waits for m's answer and puts it in aheadMeta, fetching the
// ENVELOPE of any message over max_message_size.
func (w *Worker) takeMeta(s *sess, m *metaAhead) error {
	<-m.done
	if m.err != nil {
		return fmt.Errorf("uid fetch metadata: %w", m.err)
	}
	if len(m.uids) == 0 || s.aheadMetaN >= len(s.ahead) || s.ahead[s.aheadMetaN] != m.uids[0] {
		return nil // not the UIDs next in line (sent for a look-ahead since replaced)
	}
	metas := s.aheadMeta
	var oversize imap.UIDSet
	for _, msg := range m.msgs {
		if msg.UID == 0 || !m.set.Contains(msg.UID) {
			continue
		}
		metas[uint32(msg.UID)] = meta{size: msg.RFC822Size, date: msg.InternalDate}
		if w.cfg.MaxMessageSize > 0 && msg.RFC822Size > w.cfg.MaxMessageSize {
			oversize.AddNum(msg.UID)
		}
	}
	if len(oversize) > 0 {
		// A message too large to download is known by its ENVELOPE's
		// Message-ID alone.
		envs, err := s.c.Fetch(oversize, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
		if err != nil {
			return fmt.Errorf("uid fetch envelopes of messages over max_message_size: %w", err)
		}
		for _, e := range envs {
			if mt, ok := metas[uint32(e.UID)]; ok && e.Envelope != nil {
				mt.messageID = e.Envelope.MessageID
				metas[uint32(e.UID)] = mt
			}
		}
	}
	s.aheadMetaN += len(m.uids)
	return nil
}

// takeBatch takes the next batch off s.ahead and reports whether more
// may follow it. A batch's parsed messages stay in memory until it is
// committed (and the next batch's meanwhile): it is bounded by bytes as
// well as by count.
func (w *Worker) takeBatch(s *sess) ([]uint32, map[uint32]meta, bool) {
	n := min(len(s.ahead), w.batch, s.aheadMetaN)
	var total int64
	for i, u := range s.ahead[:n] {
		if m, ok := s.aheadMeta[u]; ok && !(w.cfg.MaxMessageSize > 0 && m.size > w.cfg.MaxMessageSize) {
			if total += m.size; total > w.batchBytes && i > 0 {
				n = i
				break
			}
		}
	}
	uids := s.ahead[:n:n]
	metas := make(map[uint32]meta, n)
	for _, u := range uids {
		if m, ok := s.aheadMeta[u]; ok {
			metas[u] = m
			delete(s.aheadMeta, u)
		}
	}
	s.ahead, s.aheadMetaN = s.ahead[n:], s.aheadMetaN-n
	more := len(s.ahead) > 0 || s.aheadMore
	if len(s.ahead) == 0 {
		s.ahead, s.aheadMeta = nil, nil
	}
	return uids, metas, more
}

// messageContext is the context for the batch in hand. It is detached
// from ctx so that a stop request lets the batch finish: it ends at the
// step deadline, or stopGrace after ctx ends, whichever comes first.
func (w *Worker) messageContext(ctx context.Context) (context.Context, func()) {
	dctx, cancelDeadline := context.WithTimeoutCause(context.WithoutCancel(ctx), w.stepTimeout, errStepDeadline)
	mctx, cancel := context.WithCancelCause(dctx)
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(w.stopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(errStopGrace)
		case <-mctx.Done():
		}
	})
	return mctx, func() {
		stop()
		cancel(nil)
		cancelDeadline()
	}
}

// staged is one message of a batch in the handler's hands.
type staged struct {
	in  *Incoming
	val Staged
}

// stageBatch stages every message of the batch as its body streams in (one
// UID FETCH for all of them). done holds the UIDs found gone meanwhile. ctx
// bounds the batch; stopping (outer ending) only stops taking in more
// messages.
func (w *Worker) stageBatch(ctx, outer context.Context, s *sess, uids []uint32, metas map[uint32]meta) ([]staged, map[uint32]bool, error) {
	done := make(map[uint32]bool, len(uids))
	var batch []staged
	take := func(in *Incoming) {
		batch = append(batch, staged{in: in, val: w.stage(ctx, in)})
	}
	var fetchSet imap.UIDSet
	for _, uid := range uids {
		m, ok := metas[uid]
		if !ok {
			w.log.Info("message vanished before it could be fetched", "uid", uid, "message_id", "")
			done[uid] = true
			continue
		}
		in := w.incoming(s, uid, m)
		if in.Oversize {
			w.log.Warn("message larger than max_message_size: not downloaded", "uid", uid, "message_id", m.messageID,
				"size", m.size, "max_message_size", w.cfg.MaxMessageSize)
			take(in)
			continue
		}
		fetchSet.AddNum(imap.UID(uid))
	}
	if len(fetchSet) > 0 {
		taken, _, err := w.fetchBodies(ctx, outer, s, fetchSet, 0, metas, take)
		var refused *imap.Error
		if errors.As(err, &refused) {
			// A NO (say, EXPUNGEISSUED) after the bodies it could send:
			// the connection is fine, and the rest is fetched alone below.
			w.log.Info("server refused part of a batch fetch; fetching the rest one by one", "err", err)
		} else if err != nil {
			return nil, done, err
		}
		// What the batch answer lacked (a server that names the UID only
		// after the body, a message expunged meanwhile) is fetched alone,
		// where the UID is known beforehand and silence means it is gone.
		for _, uid := range uids {
			if taken[uid] || !fetchSet.Contains(imap.UID(uid)) || outer.Err() != nil {
				continue
			}
			got, seen, err := w.fetchBodies(ctx, outer, s, imap.UIDSetNum(imap.UID(uid)), uid, metas, take)
			switch {
			case errors.As(err, &refused):
				w.log.Warn("server refused to send the message; leaving it for the next cycle", "uid", uid,
					"message_id", metas[uid].messageID, "err", err)
			case err != nil:
				return nil, done, err
			case !seen[uid]:
				w.log.Info("message vanished before it could be fetched", "uid", uid, "message_id", metas[uid].messageID)
				done[uid] = true
			case !got[uid]:
				w.log.Warn("server sent no body for the message; leaving it for the next cycle", "uid", uid, "message_id", metas[uid].messageID)
			}
		}
	}
	return batch, done, nil
}

// acknowledge moves the committed messages of a batch, one command per
// destination, and marks those moved done.
func (w *Worker) acknowledge(c *imapclient.Client, caps imap.CapSet, batch []staged, disps []Disposition, done map[uint32]bool) error {
	var acked, quarantined imap.UIDSet
	// The handler read the Message-ID from the body; ENVELOPE gave it only
	// for a message not downloaded.
	ids := make([]string, len(batch))
	for i, st := range batch {
		if ids[i] = disps[i].MessageID; ids[i] == "" {
			ids[i] = st.in.MessageID
		}
	}
	for i, st := range batch {
		switch d := disps[i]; d.Action {
		case Ack:
			acked.AddNum(imap.UID(st.in.UID))
		case Quarantine:
			quarantined.AddNum(imap.UID(st.in.UID))
		case Retry:
			w.log.Info("message left in the folder for the next cycle", "uid", st.in.UID, "message_id", ids[i], "reason", d.Reason)
		default:
			w.log.Error("handler returned an unknown action; leaving the message for the next cycle", "uid", st.in.UID, "message_id", ids[i], "action", d.Action, "reason", d.Reason)
		}
	}
	for _, mv := range []struct {
		set  imap.UIDSet
		dest string
	}{{acked, w.cfg.ProcessedFolder}, {quarantined, w.cfg.QuarantineFolder}} {
		if len(mv.set) == 0 {
			continue
		}
		if err := moveTo(c, caps, mv.set, mv.dest); err != nil {
			return err
		}
		for i, st := range batch {
			if !mv.set.Contains(imap.UID(st.in.UID)) {
				continue
			}
			done[st.in.UID] = true
			if mv.dest == w.cfg.ProcessedFolder {
				w.log.Info("message processed", "uid", st.in.UID, "message_id", ids[i], "moved_to", mv.dest, "reason", disps[i].Reason)
			} else {
				w.log.Warn("message quarantined", "uid", st.in.UID, "message_id", ids[i], "moved_to", mv.dest, "reason", disps[i].Reason)
			}
		}
	}
	return nil
}

func (w *Worker) incoming(s *sess, uid uint32, m meta) *Incoming {
	return &Incoming{
		Mailbox:      w.cfg.Name,
		UIDValidity:  s.cur.UIDValidity,
		UID:          uid,
		MessageID:    m.messageID,
		Size:         m.size,
		InternalDate: m.date,
		Oversize:     w.cfg.MaxMessageSize > 0 && m.size > w.cfg.MaxMessageSize,
	}
}

// fetchBodies runs one UID FETCH BODY.PEEK[] over set and hands each body
// to take while it streams. known is the UID when set holds just one (so
// the order of items in the answer does not matter). It returns the UIDs
// taken and those the server answered for at all. Once outer ends, no
// more are taken: the rest of the answer is discarded.
func (w *Worker) fetchBodies(ctx, outer context.Context, s *sess, set imap.UIDSet, known uint32, metas map[uint32]meta, take func(*Incoming)) (taken, seen map[uint32]bool, err error) {
	taken, seen = make(map[uint32]bool), make(map[uint32]bool)
	fetch := s.c.Fetch(set, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}, // BODY.PEEK[]: \Seen untouched
	})
	if known == 0 {
		w.sendMetaAhead(s) // a batch's download: the next batch's metadata behind it
	}
	for msg := fetch.Next(); msg != nil; msg = fetch.Next() {
		uid := known
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(it.UID)
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil || uid == 0 || taken[uid] || outer.Err() != nil {
					continue // the next Next discards unread literal data
				}
				m, ok := metas[uid]
				if !ok || !set.Contains(imap.UID(uid)) {
					continue
				}
				// Hand the literal over while it streams; no other command
				// may be sent until the fetch has been read to the end.
				body := &bodyReader{r: it.Literal, size: it.Literal.Size()}
				in := w.incoming(s, uid, m)
				in.Body = body
				take(in)
				taken[uid] = true
				body.close()
				if body.err != nil {
					// The connection broke inside the literal. Reading on
					// (Next discards the rest) would race with the client's
					// reader goroutine, which has moved past it: drop the
					// connection instead; the messages stay for next time.
					s.c.Close()
					return nil, nil, fmt.Errorf("read body of uid %d: %w", uid, body.err)
				}
			}
		}
		if uid != 0 {
			seen[uid] = true
		}
	}
	if err := fetch.Close(); err != nil {
		return taken, seen, fmt.Errorf("uid fetch body: %w", err)
	}
	return taken, seen, nil
}

// stage hands one message to the handler. A panic quarantines the message
// without the handler: its Disposition stands in for the staged value.
func (w *Worker) stage(ctx context.Context, in *Incoming) (v Staged) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("handler panicked; quarantining the message", "uid", in.UID, "message_id", in.MessageID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			v = stagePanic{Disposition{Action: Quarantine, Reason: fmt.Sprintf("panic: %v", r)}}
		}
	}()
	return w.h.Stage(ctx, in)
}

// stagePanic marks a message whose Stage panicked.
type stagePanic struct{ d Disposition }

// handed are the staged values of the batch the handler gets back (less
// the messages whose Stage panicked), and the index in batch of each.
func handed(batch []staged) (vals []Staged, at []int) {
	for i, st := range batch {
		if _, ok := st.val.(stagePanic); !ok {
			vals, at = append(vals, st.val), append(at, i)
		}
	}
	return vals, at
}

// prepareBatch has a Preparer handler ready the batch for its commit. A
// panic is logged and leaves the work to Commit.
func (w *Worker) prepareBatch(ctx context.Context, batch []staged) {
	p, ok := w.h.(Preparer)
	if !ok {
		return
	}
	vals, _ := handed(batch)
	if len(vals) == 0 {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("handler panicked while preparing a batch; its commit does the rest", "panic", fmt.Sprint(r),
				"messages", len(vals), "stack", string(debug.Stack()))
		}
	}()
	p.Prepare(ctx, vals)
}

// commit has the handler commit the batch (less the messages whose Stage
// panicked). A panic here leaves every message for the next cycle: the
// handler is expected to isolate a single message's failure itself.
func (w *Worker) commit(ctx context.Context, batch []staged) (disps []Disposition) {
	disps = make([]Disposition, len(batch))
	for i, st := range batch {
		if p, ok := st.val.(stagePanic); ok {
			disps[i] = p.d
		}
	}
	vals, at := handed(batch)
	if len(vals) == 0 {
		return disps
	}
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("handler panicked while committing; leaving the messages for the next cycle", "panic", fmt.Sprint(r),
				"messages", len(vals), "stack", string(debug.Stack()))
			for _, i := range at {
				disps[i] = Disposition{Action: Retry, Reason: fmt.Sprintf("panic while committing: %v", r)}
			}
		}
	}()
	got := w.h.Commit(ctx, vals)
	if len(got) != len(vals) {
		panic(fmt.Sprintf("handler answered for %d of %d messages", len(got), len(vals)))
	}
	for j, i := range at {
		disps[i] = got[j]
	}
	return disps
}

// bodyReader passes a literal through, remembering a read error and
// refusing reads once Handle has returned. A literal that ends before its
// announced size (the connection was cut: go-imap reports a plain EOF
// then) is an error, never a short message.
type bodyReader struct {
	mu     sync.Mutex
	r      io.Reader
	size   int64 // announced literal size
	read   int64
	err    error
	closed bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	if err == io.EOF && b.read < b.size {
		err = fmt.Errorf("%w: connection ended after %d of %d bytes", io.ErrUnexpectedEOF, b.read, b.size)
	}
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *bodyReader) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

func (w *Worker) saveCursor(s *sess) {
	if s.cur == s.saved {
		return
	}
	if err := w.cs.SaveCursor(w.cfg.Name, s.cur); err != nil {
		w.log.Error("cannot save cursor", "err", err, "uidvalidity", s.cur.UIDValidity, "last_uid", s.cur.LastUID)
		return
	}
	s.saved = s.cur
}

// wait returns when there may be new mail: IDLE (when configured and
// offered) or a sleep, each bounded by PollInterval, ended early by EXISTS,
// Kick or ctx.
func (w *Worker) wait(ctx context.Context, s *sess) error {
	timer := time.NewTimer(w.cfg.PollInterval)
	defer timer.Stop()
	if !w.cfg.Idle || !s.caps.Has(imap.CapIdle) {
		select {
		case <-timer.C:
		case <-s.newMail:
		case <-w.kick:
		case <-ctx.Done():
		case <-s.c.Closed():
			return errServerClosed
		}
		return nil
	}

	// A silent server must not hold us past the poll interval plus the
	// step deadline: the guard closes the connection then (or at once when
	// ctx ends).
	gctx, cancel := context.WithTimeoutCause(ctx, w.cfg.PollInterval+w.stepTimeout, errStepDeadline)
	defer cancel()
	stop := context.AfterFunc(gctx, func() { s.c.Close() })
	idle, err := s.c.Idle()
	if err != nil {
		if !stop() {
			return guardErr(gctx, err)
		}
		return fmt.Errorf("idle: %w", err)
	}
	select {
	case <-timer.C:
	case <-s.newMail:
	case <-w.kick:
	case <-gctx.Done():
	case <-s.c.Closed():
	}
	if ctx.Err() != nil {
		return nil // the guard is closing the connection
	}
	err = idle.Close() // DONE
	if err == nil {
		err = idle.Wait()
	}
	if !stop() {
		return guardErr(gctx, err)
	}
	select {
	case <-s.c.Closed():
		return errServerClosed
	default:
	}
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}
