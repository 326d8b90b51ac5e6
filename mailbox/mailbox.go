package mailbox

import (
	"context"
	"io"
	"strconv"
	"time"
)

// Incoming is one message found in the mailbox's folder.
type Incoming struct {
	Mailbox     string // config name
	UIDValidity uint32
	UID         uint32
	// MessageID is ENVELOPE's, fetched only when Oversize (the handler
	// reads the Message-ID of a downloaded message from its body); may be "".
	MessageID    string
	Size         int64 // RFC822.SIZE
	InternalDate time.Time
	// Body streams the exact bytes of BODY.PEEK[] straight from the
	// connection; the worker never buffers the message whole. It is valid
	// only until Handle returns (reads after that fail), and a read error
	// means the connection broke: the message will be offered again. Body
	// is nil when Oversize.
	Body io.Reader
	// Oversize reports Size > MaxMessageSize: the message was not
	// downloaded.
	Oversize bool
}

// Action is what the worker does with a message after Handle.
type Action int

const (
	// Ack means the message's effect is committed: move it to the
	// processed folder.
	Ack Action = iota
	// Quarantine moves the message to the quarantine folder.
	Quarantine
	// Retry leaves the message where it is; it is offered again on the
	// next poll cycle (not sooner).
	Retry
)

// String returns "ack", "quarantine", "retry" or "Action(n)".
func (a Action) String() string {
	switch a {
	case Ack:
		return "ack"
	case Quarantine:
		return "quarantine"
	case Retry:
		return "retry"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Disposition is a Handler's verdict on one message.
type Disposition struct {
	Action Action
	Reason string // logged; required in spirit for Quarantine and Retry
	// MessageID is the message's Message-ID as the handler read it, for
	// the worker's log lines ("" when unknown).
	MessageID string
}

// Handler receives the messages of a mailbox in batches, in UID order: the
// worker fetches a batch with one command and calls Stage for each message
// while its body streams in, then Commit once for the whole batch, and
// moves the messages to the processed or quarantine folder only after
// Commit has returned. So a handler can make many messages durable with
// one fsync, and Commit must return only once the effects it answers Ack
// or Quarantine for are durable. During a backlog a batch's Commit runs
// while the next batch is staged (so Stage and Commit may run at once, but
// never two Commits), and Commit must not rely on its ctx ending.
//
// ctx ends when the poll step's deadline passes, or about 10 s after the
// worker was asked to stop (so that the batch in hand can be finished; no
// message is staged after the stop request). A panic in Stage is recovered
// and the message quarantined; a panic in Commit leaves the batch for the
// next cycle, so a handler isolates single messages' failures itself.
type Handler interface {
	// Stage takes in one message; in.Body is valid only until it returns.
	Stage(ctx context.Context, in *Incoming) Staged
	// Commit makes the staged messages' effects durable, in the order
	// staged, and answers for each.
	Commit(ctx context.Context, batch []Staged) []Disposition
}

// Preparer is a Handler that readies a staged batch for its Commit (waits
// for its parsing, makes its bytes durable) in a step of its own. During a
// backlog the worker calls Prepare for a batch as soon as it is staged,
// while the batch before it may still be committing, and Commit for it
// after that one: so the batches' commits, which go one at a time in their
// order, do only what must go in that order. Prepare may run beside a
// Commit and beside another Prepare; a panic in it is recovered and
// logged, and Commit must still do whatever Prepare left undone.
type Preparer interface {
	Prepare(ctx context.Context, batch []Staged)
}

// Staged is what a Handler's Stage returns and its Commit gets back.
type Staged any

// MessageHandler handles one message at a time: Handle returns only once
// the message's effect is durable when it answers Ack.
type MessageHandler interface {
	Handle(ctx context.Context, in *Incoming) Disposition
}

// OneByOne adapts a MessageHandler to Handler: each message is handled
// (and made durable) in Stage; Commit only hands the answers back.
func OneByOne(h MessageHandler) Handler { return oneByOne{h} }

type oneByOne struct{ h MessageHandler }

func (o oneByOne) Stage(ctx context.Context, in *Incoming) Staged { return o.h.Handle(ctx, in) }

func (o oneByOne) Commit(_ context.Context, batch []Staged) []Disposition {
	ds := make([]Disposition, len(batch))
	for i, v := range batch {
		ds[i] = v.(Disposition)
	}
	return ds
}

// HandlerFunc adapts a function to a MessageHandler (OneByOne makes it a
// Handler).
type HandlerFunc func(ctx context.Context, in *Incoming) Disposition

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, in *Incoming) Disposition { return f(ctx, in) }

// Cursor is persisted per mailbox between polls and restarts: every
// message of the folder with UIDVALIDITY UIDValidity and a UID up to and
// including LastUID has been acknowledged or quarantined.
type Cursor struct {
	UIDValidity uint32
	LastUID     uint32
}

// CursorStore keeps the Cursor of each mailbox (by config name). A mailbox
// never seen before loads as the zero Cursor without error.
type CursorStore interface {
	LoadCursor(mailbox string) (Cursor, error)
	SaveCursor(mailbox string, c Cursor) error
}

// Status is a snapshot of a Worker's health.
type Status struct {
	Connected  bool      // logged in and polling (or idling)
	LastPoll   time.Time // end of the last successful poll cycle
	LastError  string    // most recent error, kept after recovery; "" if none yet
	Reconnects int       // connections established after the first one
}
