package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxReceived = 40
	DefaultAckLimit    = 10
	// DefaultGlobalAckLimit caps acknowledgements to everyone per hour.
	DefaultGlobalAckLimit = 300
	ackWindow             = time.Hour
	textExcerpt           = 8 << 10
)

// Options tune the pipeline.
type Options struct {
	ReopenWindow time.Duration
	Urgency      *classify.Urgency
	Limits       classify.Limits
	// OwnAddresses are the support addresses: never a requester, and mail
	// from them is our own.
	OwnAddresses []string
	// MaxReceived quarantines mail with more Received headers as a loop.
	MaxReceived int
	// AckLimit is the most acknowledgements one address gets per hour.
	AckLimit int
	// GlobalAckLimit is the most acknowledgements sent per hour in all: a
	// loop through many addresses (or a flood) stops there.
	GlobalAckLimit int
	Now            func() time.Time
}

// Pipeline turns fetched messages into case changes.
type Pipeline struct {
	store    *store.Store
	render   *notify.Renderer
	opts     Options
	log      *slog.Logger
	onCommit func()
	parsing  chan struct{} // bounds the messages held in memory and parsed at once
	helpers  *helpers      // run the storing and parsing behind Stage
	capWarn  capWarning
}

// capWarning keeps the global acknowledgement cap's warning to one line
// per capWarnEvery: a flood that reaches the cap would otherwise log a
// warning for every new case (each decision's signal still says it).
type capWarning struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int // acknowledgements suppressed since the last line
}

const capWarnEvery = 10 * time.Minute

// note counts one suppressed acknowledgement and reports whether a
// warning is due now, with the count it covers.
func (c *capWarning) note(now time.Time) (suppressed int, due bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.suppressed++
	if !c.last.IsZero() && now.Sub(c.last) < capWarnEvery {
		return 0, false
	}
	suppressed, c.suppressed, c.last = c.suppressed, 0, now
	return suppressed, true
}

// New returns a pipeline; onCommit is called after every commit that queued
// notifications (to kick the outbox worker).
func New(st *store.Store, r *notify.Renderer, opts Options, log *slog.Logger, onCommit func()) *Pipeline {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxReceived == 0 {
		opts.MaxReceived = DefaultMaxReceived
	}
	if opts.AckLimit == 0 {
		opts.AckLimit = DefaultAckLimit
	}
	if opts.GlobalAckLimit == 0 {
		opts.GlobalAckLimit = DefaultGlobalAckLimit
	}
	if opts.Urgency == nil {
		opts.Urgency = classify.NewUrgency(classify.DefaultUrgentPhrases())
	}
	if opts.Limits == (classify.Limits{}) {
		opts.Limits = classify.DefaultLimits()
	}
	for i, a := range opts.OwnAddresses {
		opts.OwnAddresses[i] = strings.ToLower(a)
	}
	if onCommit == nil {
		onCommit = func() {}
	}
	return &Pipeline{store: st, render: r, opts: opts, log: log, onCommit: onCommit,
		parsing: make(chan struct{}, 2*runtime.GOMAXPROCS(0)), helpers: newHelpers()}
}

var (
	_ mailbox.Handler  = (*Pipeline)(nil)
	_ mailbox.Preparer = (*Pipeline)(nil)
)

// staged is one message between Stage and Commit: either its answer is
// already known (disp), or it waits for a quarantine record (reason) or a
// decision (msg).
type staged struct {
	prepared bool // parsed and made durable (or answered): Commit only decides
	base     store.Decision
	disp     *mailbox.Disposition
	reason   string // quarantine reason; base.Signal holds the detail
	msg      *classify.Message
	parsed   chan struct{} // closed once reason or msg is set; nil when no parse runs
}

// Stage stores one message's bytes (not yet durable) and parses them;
// Commit decides it. A message decided before a restart is answered as it
// was then, and a raw store that cannot take the bytes (disk full, I/O
// error) answers Retry: the message stays on the server.
func (p *Pipeline) Stage(ctx context.Context, in *mailbox.Incoming) mailbox.Staged {
	st := &staged{base: store.Decision{Mailbox: in.Mailbox, UIDValidity: in.UIDValidity, UID: in.UID,
		MessageID: in.MessageID, Size: in.Size, ReceivedAt: in.InternalDate}}
	answer := func(d mailbox.Disposition) mailbox.Staged {
		st.disp = &d
		return st
	}
	if d, err := p.store.DecisionByUID(in.Mailbox, in.UIDValidity, in.UID); err != nil {
		p.logAbout(st, slog.LevelError, "cannot read the store; will retry", "err", err)
		return answer(mailbox.Disposition{Action: mailbox.Retry, Reason: err.Error()})
	} else if d != nil {
		p.logAbout(st, slog.LevelInfo, "already decided before a restart; acknowledging again", "outcome", d.Outcome, "case", d.CaseID)
		return answer(dispositionOf(d))
	}
	if in.Oversize || in.Body == nil {
		st.base.MessageKey = in.MessageID
		st.reason, st.base.Signal = "too-large", fmt.Sprintf("RFC822.SIZE %d bytes is over max_message_size; not downloaded, left in the quarantine folder", in.Size)
		return st
	}
	st.parsed = make(chan struct{})
	body := in.Body
	if in.Size > 0 && in.Size <= inMemoryMax {
		// Small enough to hold: read it off the connection now and let a
		// helper store and parse it while the next message downloads.
		p.parsing <- struct{}{}
		buf := bodyBuffers.Get().(*bytes.Buffer)
		buf.Reset()
		buf.Grow(int(in.Size))
		n, err := buf.ReadFrom(io.LimitReader(in.Body, inMemoryMax+1))
		if err != nil {
			bodyBuffers.Put(buf)
			<-p.parsing
			close(st.parsed)
			return answer(mailbox.Disposition{Action: mailbox.Retry, Reason: err.Error()})
		}
		if n <= inMemoryMax {
			p.helpers.run(func() {
				defer close(st.parsed)
				defer func() { <-p.parsing }()
				defer bodyBuffers.Put(buf) // the parsed message keeps no part of it
				if p.stageRawBytes(st, buf.Bytes()) {
					p.parsedFrom(st, func() io.Reader { return bytes.NewReader(buf.Bytes()) },
						func() string { return store.ContentKeyOf(buf.Bytes()) })
				}
			})
			return st
		}
		// Bigger than the server announced (RFC822.SIZE is an estimate on
		// some servers): stream the rest after what was read.
		<-p.parsing
		defer bodyBuffers.Put(buf)
		body = io.MultiReader(bytes.NewReader(buf.Bytes()), in.Body)
	}
	// A big message streams to the raw store; parsing it from there
	// overlaps with the next message's download.
	if !p.stageRaw(st, body) {
		close(st.parsed)
		return st
	}
	p.helpers.run(func() {
		defer close(st.parsed)
		p.parsing <- struct{}{}
		defer func() { <-p.parsing }()
		f, err := p.store.OpenRaw(st.base.RawRef)
		if err != nil {
			p.cannotStore(st, err)
			return
		}
		defer f.Close()
		// A message in a file of its own is stored under its content key.
		p.parsedFrom(st, func() io.Reader { return io.NewSectionReader(f, 0, st.base.Size) },
			func() string { return st.base.RawRef })
	})
	return st
}

// bodyBuffers recycles the buffers of messages held in memory.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// inMemoryMax is the largest message Stage holds in memory (at most
// parsing's capacity of them at once); bigger ones stream to disk.
const inMemoryMax = 1 << 20

// stageRaw writes r to the raw store for st; on failure st answers Retry.
func (p *Pipeline) stageRaw(st *staged, r io.Reader) bool {
	ref, size, err := p.store.StageRaw(r)
	return p.stored(st, ref, size, err)
}

// stageRawBytes is stageRaw for a message held in memory.
func (p *Pipeline) stageRawBytes(st *staged, b []byte) bool {
	ref, err := p.store.StageRawBytes(b)
	return p.stored(st, ref, int64(len(b)), err)
}

// stored notes where st's bytes went, or makes st answer Retry.
func (p *Pipeline) stored(st *staged, ref string, size int64, err error) bool {
	if err != nil {
		p.cannotStore(st, err)
		return false
	}
	st.base.RawRef, st.base.Size = ref, size // parsedFrom logs it from here on
	return true
}

func (p *Pipeline) cannotStore(st *staged, err error) {
	p.logAbout(st, slog.LevelError, "cannot store the raw message (disk full or not writable?); left on the server, will retry", "err", err)
	st.disp = &mailbox.Disposition{Action: mailbox.Retry, Reason: err.Error()}
}

// parsedFrom parses the message's bytes (each call of raw reads them from
// the start: they may not be in the raw store until it syncs) and fills in
// what they say. contentKey is called for the key of a message without a
// Message-ID.
func (p *Pipeline) parsedFrom(st *staged, raw func() io.Reader, contentKey func() string) {
	msg, perr := p.parseFrom(raw())
	if perr != nil {
		st.base.MessageKey = contentKey()
		if msg != nil && msg.MessageID != "" {
			st.base.MessageID, st.base.MessageKey = msg.MessageID, msg.MessageID
		} else if m := lenientHeaderOf(raw()); m != nil {
			// classify could not read the header; the Message-ID a lenient
			// reader finds still names the message in the record and the
			// log (the key stays the content's, as for a message without).
			st.base.MessageID = m.MessageID
		}
		st.reason, st.base.Signal = "unparseable", perr.Error()
		var pe *classify.ParseError
		if errors.As(perr, &pe) {
			st.reason = pe.Reason
		}
		return
	}
	st.base.MessageID, st.base.From, st.base.Subject, st.base.Warnings = msg.MessageID, msg.From, msg.Subject, msg.Warnings
	st.base.MessageKey = msg.MessageID
	if st.base.MessageKey == "" {
		st.base.MessageKey = contentKey()
	}
	st.msg = msg
}

// Commit makes the staged messages' bytes durable with one sync and
// decides them in order in one transaction, so a batch costs one fsync of
// each kind however many messages it holds. Should that transaction fail
// (a panic in the decision logic, a full disk), each message is committed
// on its own, so one bad message is quarantined and the others go through.
// It answers Ack only for a committed decision, Quarantine for a message
// that cannot become a case (also committed), and Retry when the store
// could not take it.
func (p *Pipeline) Commit(ctx context.Context, batch []mailbox.Staged) []mailbox.Disposition {
	items := stagedItems(batch)
	p.prepare(items)
	var pending []*staged
	for _, st := range items {
		if st.disp == nil {
			pending = append(pending, st)
		}
	}
	if len(pending) == 1 || len(pending) > 1 && !p.commitTogether(pending) {
		for _, st := range pending {
			p.commitAlone(st)
		}
	}
	out := make([]mailbox.Disposition, len(items))
	for i, st := range items {
		out[i] = *st.disp
		out[i].MessageID = st.base.MessageID
	}
	return out
}

// Prepare waits for the batch's parses and makes its raw bytes durable
// with one sync; the worker calls it beside the commit of the batch
// before (mailbox.Preparer), which left that sync on the path every batch
// takes in turn: 2-57 ms of a 100-200 ms commit on the bench. A message
// whose bytes could not be made durable answers Retry.
func (p *Pipeline) Prepare(ctx context.Context, batch []mailbox.Staged) {
	p.prepare(stagedItems(batch))
}

func stagedItems(batch []mailbox.Staged) []*staged {
	items := make([]*staged, len(batch))
	for i, v := range batch {
		items[i] = v.(*staged)
	}
	return items
}

// prepare is Prepare for the items not prepared yet. They are marked
// prepared only once their sync has answered, so that a Prepare cut short
// (a panic) leaves the sync to Commit.
func (p *Pipeline) prepare(items []*staged) {
	var todo, pending []*staged
	for _, st := range items {
		if st.prepared {
			continue
		}
		todo = append(todo, st)
		if st.parsed != nil {
			<-st.parsed
		}
		if st.disp == nil {
			pending = append(pending, st)
		}
	}
	if len(pending) > 0 {
		if err := p.store.MakeDurable(rawRefs(pending)); err != nil {
			p.notDurable(pending, err)
		}
	}
	for _, st := range todo {
		st.prepared = true
	}
}

// Handle stages and commits one message.
func (p *Pipeline) Handle(ctx context.Context, in *mailbox.Incoming) mailbox.Disposition {
	return p.Commit(ctx, []mailbox.Staged{p.Stage(ctx, in)})[0]
}

// commitTogether records every pending message (two or more) in one
// transaction and reports whether it was committed.
func (p *Pipeline) commitTogether(pending []*staged) (ok bool) {
	decided := make([]store.Decision, len(pending))
	queued := 0
	defer func() {
		if r := recover(); r != nil {
			p.log.Warn("deciding a batch panicked; committing its messages one by one", "panic", fmt.Sprint(r), "messages", len(pending))
			ok = false
		}
	}()
	err := p.store.Update(func(tx *store.Tx) error {
		queued = 0
		for i, st := range pending {
			d := &decided[i]
			*d = st.base
			if st.msg == nil {
				if err := p.recordQuarantine(tx, d, st.reason); err != nil {
					return err
				}
				continue
			}
			n, err := p.decide(tx, d, st.msg)
			if err != nil {
				return err
			}
			if err := tx.RecordDecision(d); err != nil {
				return err
			}
			queued += n
		}
		return nil
	})
	if err != nil {
		p.log.Warn("cannot commit a batch; committing its messages one by one", "err", err, "messages", len(pending))
		return false
	}
	for i, st := range pending {
		p.decided(st, &decided[i])
	}
	if queued > 0 {
		p.onCommit()
	}
	return true
}

// rawRefs are the raw-store references of the messages.
func rawRefs(sts []*staged) []string {
	refs := make([]string, len(sts))
	for i, st := range sts {
		refs[i] = st.base.RawRef
	}
	return refs
}

// notDurable answers Retry for messages whose raw bytes could not be made
// durable: nothing about them was committed.
func (p *Pipeline) notDurable(sts []*staged, err error) {
	for _, st := range sts {
		p.logAbout(st, slog.LevelError, "cannot make the raw message durable; left on the server, will retry", "err", err)
		st.disp = &mailbox.Disposition{Action: mailbox.Retry, Reason: err.Error()}
	}
}

// commitAlone records one message in a transaction of its own.
func (p *Pipeline) commitAlone(st *staged) {
	if st.msg == nil {
		d := st.base
		err := p.store.Update(func(tx *store.Tx) error { return p.recordQuarantine(tx, &d, st.reason) })
		if err != nil {
			p.failed(st, err)
			return
		}
		p.decided(st, &d)
		return
	}
	d, queued, err := p.commit(st.base, st.msg)
	var pe *panicError
	if errors.As(err, &pe) {
		p.logAbout(st, slog.LevelError, "deciding the message panicked; quarantining it", "panic", pe.value, "stack", pe.stack)
		st.msg, st.reason, st.base.Signal = nil, "panic", fmt.Sprintf("processing panicked: %v", pe.value)
		p.commitAlone(st)
		return
	}
	if err != nil {
		p.failed(st, err)
		return
	}
	p.decided(st, d)
	if queued > 0 {
		p.onCommit()
	}
}

// failed answers Retry for a message whose commit failed.
func (p *Pipeline) failed(st *staged, err error) {
	p.logAbout(st, slog.LevelError, "cannot commit; left on the server, will retry", "err", err)
	st.disp = &mailbox.Disposition{Action: mailbox.Retry, Reason: err.Error()}
}

// logAbout logs msg about st's message, named first by its mailbox, UID,
// Message-ID and, once stored, its raw reference. The attributes are put
// together only when a line is written: a logger bound to them for every
// message (slog's With) had cost ~2 % of a backlog drain's CPU.
func (p *Pipeline) logAbout(st *staged, level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return
	}
	named := make([]any, 0, 8+len(args))
	named = append(named, "mailbox", st.base.Mailbox, "uid", st.base.UID, "message_id", st.base.MessageID)
	if st.base.RawRef != "" {
		named = append(named, "raw", st.base.RawRef)
	}
	p.log.Log(ctx, level, msg, append(named, args...)...)
}

// decided logs a committed decision and answers for its message.
func (p *Pipeline) decided(st *staged, d *store.Decision) {
	disp := dispositionOf(d)
	if st.msg == nil {
		p.logAbout(st, slog.LevelWarn, "message quarantined", "reason", st.reason, "detail", firstLine(d.Signal))
		disp.Reason = st.reason + ": " + firstLine(d.Signal)
	} else {
		p.logAbout(st, slog.LevelInfo, "message decided", "outcome", d.Outcome, "signal", d.Signal, "case", d.CaseID)
	}
	st.disp = &disp
}

// panicError is a panic in the decision logic, turned into an error so the
// message is quarantined with a record instead of retried forever.
type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// commit decides msg and records the decision in one transaction (rolled
// back on any error or panic). It returns the decision and how many
// notifications it queued.
func (p *Pipeline) commit(base store.Decision, msg *classify.Message) (d *store.Decision, queued int, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, queued, err = nil, 0, &panicError{value: r, stack: string(debug.Stack())}
		}
	}()
	err = p.store.Update(func(tx *store.Tx) error {
		dec := base
		n, err := p.decide(tx, &dec, msg)
		if err != nil {
			return err
		}
		if err := tx.RecordDecision(&dec); err != nil {
			return err
		}
		d, queued = &dec, n
		return nil
	})
	return d, queued, err
}

// Retry runs a quarantined message through the pipeline again from its
// stored bytes, after a fix or an upgrade (new limits, a parser fix). It
// returns the new decision, which may be a quarantine again. The IMAP copy
// stays in the quarantine folder.
func (p *Pipeline) Retry(seq uint64) (*store.Decision, error) {
	q, err := p.store.DecisionBySeq(seq)
	if err != nil {
		return nil, err
	}
	if !q.IsQuarantine() {
		return nil, fmt.Errorf("decision %d is %s, not a quarantine: %w", seq, q.Outcome, store.ErrNotRetryable)
	}
	if q.RawRef == "" {
		return nil, fmt.Errorf("decision %d (%s) has no stored bytes: the message was never downloaded; raise max_message_size and move it from the quarantine folder back to the inbox: %w", seq, q.Outcome, store.ErrNotRetryable)
	}
	msg, err := p.parse(q.RawRef)
	if err != nil {
		return nil, fmt.Errorf("decision %d: still cannot be read: %v: %w", seq, err, store.ErrNotRetryable)
	}
	base := *q
	base.Seq, base.Supersedes, base.Outcome, base.Signal, base.CaseID = 0, q.Seq, "", "", 0
	base.MessageID, base.From, base.Subject, base.Warnings = msg.MessageID, msg.From, msg.Subject, msg.Warnings
	base.MessageKey = msg.MessageID
	if base.MessageKey == "" {
		if base.MessageKey, err = p.store.ContentKey(q.RawRef); err != nil {
			return nil, fmt.Errorf("decision %d: %w", seq, err)
		}
	}
	// A second retry of the same quarantine finds the first one's decision
	// and is recorded as ignored:duplicate: nothing changes twice.
	d, queued, err := p.commit(base, msg)
	if err != nil {
		return nil, fmt.Errorf("decision %d: %w", seq, err)
	}
	p.log.Info("quarantined message retried", "mailbox", q.Mailbox, "uid", q.UID, "message_id", msg.MessageID,
		"was", q.Outcome, "outcome", d.Outcome, "signal", d.Signal, "case", d.CaseID)
	if queued > 0 {
		p.onCommit()
	}
	return d, nil
}

func dispositionOf(d *store.Decision) mailbox.Disposition {
	if d.IsQuarantine() {
		return mailbox.Disposition{Action: mailbox.Quarantine, Reason: d.Signal}
	}
	return mailbox.Disposition{Action: mailbox.Ack, Reason: d.Outcome}
}

// parse reads the stored bytes; a panic in the parser is a parse error.
func (p *Pipeline) parse(ref string) (msg *classify.Message, err error) {
	f, err := p.store.OpenRaw(ref)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return p.parseFrom(f)
}

// parseFrom parses a message; a panic in the parser is a parse error.
func (p *Pipeline) parseFrom(r io.Reader) (msg *classify.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, &classify.ParseError{Reason: "panic", Err: fmt.Errorf("%v\n%s", r, debug.Stack())}
		}
	}()
	return classify.Parse(r, p.opts.Limits)
}

// recordQuarantine records d as quarantined for reason (d.Signal holds the
// detail), unless this very message was recorded so before a restart.
func (p *Pipeline) recordQuarantine(tx *store.Tx, d *store.Decision, reason string) error {
	d.Outcome = store.OutcomeQuarantined + ":" + reason
	d.DecidedAt = p.opts.Now()
	if prev, err := tx.DecisionByKey(d.MessageKey); err != nil {
		return err
	} else if prev != nil && prev.Mailbox == d.Mailbox && prev.UID == d.UID {
		return nil
	}
	return tx.RecordDecision(d)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// decide applies msg to the store and fills d's outcome; it returns how
// many notifications it queued.
func (p *Pipeline) decide(tx *store.Tx, d *store.Decision, msg *classify.Message) (int, error) {
	now := p.opts.Now()
	d.DecidedAt = now
	if prev, err := tx.DecisionByKey(d.MessageKey); err != nil {
		return 0, err
	} else if prev != nil && prev.Seq != d.Supersedes {
		d.Outcome = store.OutcomeIgnored + ":duplicate"
		d.Signal = fmt.Sprintf("already decided as %s (mailbox %s, UID %d)", prev.Outcome, prev.Mailbox, prev.UID)
		d.CaseID = prev.CaseID
		return 0, nil
	}
	if msg.ReceivedCount > p.opts.MaxReceived {
		d.Outcome = store.OutcomeQuarantined + ":loop"
		d.Signal = fmt.Sprintf("%d Received headers (limit %d): a mail loop", msg.ReceivedCount, p.opts.MaxReceived)
		return 0, nil
	}
	thread, signal, err := p.thread(tx, msg)
	if err != nil {
		return 0, err
	}
	automated := msg.Automated
	if automated == "" && slices.Contains(p.opts.OwnAddresses, msg.From) {
		automated = "sender is our own support address " + msg.From
	}
	if automated != "" && msg.Bounce {
		if handled, err := p.bounce(tx, d, msg, now); err != nil || handled {
			return 0, err
		}
	}
	if automated != "" {
		d.Outcome = store.OutcomeIgnored + ":automated"
		d.Signal = automated
		if thread != nil {
			d.CaseID = thread.ID
			d.Signal += fmt.Sprintf("; concerns case #%d (%s), left unchanged", thread.ID, signal)
		}
		return 0, nil
	}
	phrase, urgent := p.opts.Urgency.Match(msg.Subject)
	if thread != nil && !thread.IsParticipant(msg.From) {
		signal = fmt.Sprintf("%s, but %s is not a participant of case #%d: opened a new case", signal, msg.From, thread.ID)
		thread = nil
	}
	if thread == nil {
		return p.newCase(tx, d, msg, signal, phrase, urgent, nil, now)
	}
	switch casemodel.ReplyEffect(thread, now, p.opts.ReopenWindow) {
	case casemodel.OpenLinked:
		old := thread
		if old.Status != casemodel.Archived {
			old.SetStatus(casemodel.Archived, "system", fmt.Sprintf("closed longer than the reopen window (%v)", p.opts.ReopenWindow), now)
		}
		return p.newCase(tx, d, msg, fmt.Sprintf("%s; case #%d is archived: opened a linked case", signal, old.ID), phrase, urgent, old, now)
	case casemodel.Reopen:
		return p.reply(tx, d, msg, thread, signal, phrase, urgent, true, now)
	default:
		return p.reply(tx, d, msg, thread, signal, phrase, urgent, false, now)
	}
}

// thread finds the case msg belongs to: subject tag first, then
// In-Reply-To, then References (newest first).
func (p *Pipeline) thread(tx *store.Tx, msg *classify.Message) (*casemodel.Case, string, error) {
	var tagNote string
	if id, ok := classify.CaseTag(msg.Subject); ok {
		c, err := tx.Case(id)
		if err == nil {
			return c, fmt.Sprintf("subject tag #%d", id), nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, "", err
		}
		tagNote = fmt.Sprintf("subject tag #%d names no case; ", id)
	}
	var forged []string
	try := func(header string, ids []string) (*casemodel.Case, string, error) {
		for i := len(ids) - 1; i >= 0; i-- {
			if p.render.CheckMessageID(ids[i]) == notify.Forged {
				forged = append(forged, fmt.Sprintf("%s <%s> looks like ours but its token does not verify; ", header, ids[i]))
				continue
			}
			if id, ok := tx.CaseByMessageID(ids[i]); ok {
				c, err := tx.Case(id)
				if err != nil {
					return nil, "", err
				}
				return c, fmt.Sprintf("%s%s%s <%s> is on case #%d", tagNote, strings.Join(forged, ""), header, ids[i], id), nil
			}
		}
		return nil, "", nil
	}
	if c, sig, err := try("In-Reply-To", msg.InReplyTo); c != nil || err != nil {
		return c, sig, err
	}
	if c, sig, err := try("References", msg.References); c != nil || err != nil {
		return c, sig, err
	}
	return nil, tagNote + strings.Join(forged, "") + "no case tag or known Message-ID in In-Reply-To/References: new request", nil
}

func (p *Pipeline) incoming(d *store.Decision, msg *classify.Message, signal string) casemodel.Message {
	date := msg.Date
	if date.IsZero() {
		date = d.ReceivedAt
	}
	return casemodel.Message{
		MessageID: msg.MessageID, Direction: casemodel.In, From: msg.From, To: msg.To,
		Subject: msg.Subject, Date: date, Signal: signal, Mailbox: d.Mailbox, UID: d.UID,
		RawRef: d.RawRef, Text: truncate(msg.Text, textExcerpt),
	}
}

func (p *Pipeline) newCase(tx *store.Tx, d *store.Decision, msg *classify.Message, signal, phrase string, urgent bool, linkedFrom *casemodel.Case, now time.Time) (int, error) {
	requester := msg.ReplyTo
	if requester == "" || slices.Contains(p.opts.OwnAddresses, requester) {
		requester = msg.From
	}
	if requester == "" {
		d.Outcome = store.OutcomeQuarantined + ":no-sender"
		d.Signal = "no From or Reply-To address: nobody to open a case for"
		return 0, nil
	}
	id, err := tx.NewCaseID()
	if err != nil {
		return 0, err
	}
	prio := casemodel.Normal
	if urgent {
		prio = casemodel.Urgent
		signal += fmt.Sprintf("; subject phrase %q: urgent", phrase)
	}
	subject := classify.StripReplyPrefixes(msg.Subject)
	if subject == "" {
		subject = "(no subject)"
	}
	c := casemodel.New(id, subject, requester, msg.FromName, d.Mailbox, prio, now)
	c.Language = msg.ContentLanguage
	c.AddParticipants(msg.From)
	for _, a := range msg.Cc {
		if !slices.Contains(p.opts.OwnAddresses, a) {
			c.AddParticipants(a)
		}
	}
	if linkedFrom != nil {
		c.Links = append(c.Links, linkedFrom.ID)
		c.AddEvent(casemodel.Event{At: now, Actor: "mail", Kind: "linked", To: linkedFrom.Tag(), Note: "reply to archived case " + linkedFrom.Tag()})
		linkedFrom.Links = append(linkedFrom.Links, c.ID)
		linkedFrom.AddEvent(casemodel.Event{At: now, Actor: "mail", Kind: "linked", To: c.Tag(), Note: "a reply opened case " + c.Tag()})
		if err := tx.PutCase(linkedFrom); err != nil {
			return 0, err
		}
	}
	c.Messages = append(c.Messages, p.incoming(d, msg, signal))
	ack := true
	if n := tx.AcksSince(requester, now.Add(-ackWindow)); n >= p.opts.AckLimit {
		ack = false
		signal += fmt.Sprintf("; acknowledgement suppressed: %d sent to %s in the last hour (limit %d)", n, requester, p.opts.AckLimit)
	} else if n, err := tx.AllAcksSince(now.Add(-ackWindow)); err != nil {
		return 0, err
	} else if n >= p.opts.GlobalAckLimit {
		ack = false
		signal += fmt.Sprintf("; acknowledgement suppressed: %d sent in all in the last hour (intake.ack_limit_global %d)", n, p.opts.GlobalAckLimit)
		if suppressed, due := p.capWarn.note(now); due {
			p.log.Warn("global acknowledgement cap reached: new cases get no acknowledgement until the hour's count drops (a mail loop or a flood?); raise intake.ack_limit_global if this is real traffic",
				"mailbox", d.Mailbox, "uid", d.UID, "message_id", msg.MessageID, "acks_last_hour", n, "ack_limit_global", p.opts.GlobalAckLimit,
				"suppressed_since_last_warning", suppressed)
		}
	}
	d.Outcome, d.Signal, d.CaseID = store.OutcomeNewCase, signal, c.ID
	rows, err := p.render.NewCase(c, notify.Event{Signal: signal, Text: msg.Text, TextOf: msg.MessageID, ReplyTo: msg.MessageID}, ack, now)
	if err != nil {
		return 0, err
	}
	return len(rows), p.commitCase(tx, c, msg.MessageID, rows, now)
}

func (p *Pipeline) reply(tx *store.Tx, d *store.Decision, msg *classify.Message, c *casemodel.Case, signal, phrase string, urgent, reopen bool, now time.Time) (int, error) {
	var rows []*store.Outgoing
	c.Messages = append(c.Messages, p.incoming(d, msg, signal))
	if reopen {
		from := c.Status
		c.SetStatus(casemodel.Open, "mail", "reply from "+msg.From, now)
		signal += fmt.Sprintf("; reopened from %s", from)
		r, err := p.render.Reopened(c, notify.Event{From: from, To: casemodel.Open, Text: msg.Text, TextOf: msg.MessageID, ReplyTo: msg.MessageID, Actor: msg.From}, now)
		if err != nil {
			return 0, err
		}
		rows = append(rows, r...)
	} else {
		c.AddEvent(casemodel.Event{At: now, Actor: "mail", Kind: "reply", Note: "reply from " + msg.From})
		r, err := p.render.CustomerReplied(c, notify.Event{Text: msg.Text, TextOf: msg.MessageID, Actor: msg.From}, now)
		if err != nil {
			return 0, err
		}
		rows = append(rows, r...)
	}
	if prio := c.Priority; urgent && c.RaisePriority(casemodel.Urgent, "mail", fmt.Sprintf("subject phrase %q", phrase), now) {
		signal += fmt.Sprintf("; subject phrase %q: raised to urgent", phrase)
		r, err := p.render.RaisedUrgent(c, notify.Event{Signal: signal, Text: msg.Text, TextOf: msg.MessageID, Actor: "mail from " + msg.From,
			From: casemodel.Status(prio), To: casemodel.Status(casemodel.Urgent)}, now)
		if err != nil {
			return 0, err
		}
		rows = append(rows, r...)
	}
	c.Messages[len(c.Messages)-1].Signal = signal
	d.Outcome, d.Signal, d.CaseID = store.OutcomeAppended, signal, c.ID
	return len(rows), p.commitCase(tx, c, msg.MessageID, rows, now)
}

// commitCase queues the notifications, threads the requester's ones onto the
// case and writes it.
func (p *Pipeline) commitCase(tx *store.Tx, c *casemodel.Case, msgID string, rows []*store.Outgoing, now time.Time) error {
	if err := tx.IndexMessageID(msgID, c.ID); err != nil {
		return err
	}
	if err := p.render.Enqueue(tx, c, rows, now); err != nil {
		return err
	}
	for _, o := range rows {
		if o.Kind == notify.KindAck {
			if err := tx.RecordAck(c.Requester, now, ackWindow); err != nil {
				return err
			}
		}
	}
	return tx.PutCase(c)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
