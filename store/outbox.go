package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caseintake/caseintake/casemodel"
)

// Outbox states.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
)

// Outgoing is one notification in the transactional outbox: queued in the
// transaction that changed the case, rendered and sent later by the notify
// worker.
type Outgoing struct {
	Seq          uint64   `json:"seq"`
	CaseID       uint64   `json:"case_id"`
	Kind         string   `json:"kind"` // ack, team_new, urgent_new, reopened, ...
	MessageID    string   `json:"message_id"`
	Subject      string   `json:"subject"`
	EnvelopeFrom string   `json:"envelope_from"` // "" sends the null reverse path
	To           []string `json:"to"`            // recipients still to deliver to
	// Event is what the message is rendered from when it is sent: the
	// notify package's record of the change (JSON). A row queued before
	// schema 6 has Data, the rendered message, instead.
	Event json.RawMessage `json:"event,omitempty"`
	Data  []byte          `json:"data,omitempty"` // the whole message (kept apart from the row; see putOutgoing)
	// Urgent rows are sent before the rest of the queue: an escalation
	// must not wait behind a backlog's team notices.
	Urgent      bool      `json:"urgent,omitempty"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"` // zero: due now
	LastError   string    `json:"last_error,omitempty"`
	Delivered   []string  `json:"delivered,omitempty"`
	Failed      []string  `json:"failed,omitempty"` // permanently refused recipients
	CreatedAt   time.Time `json:"created_at"`
	SentAt      time.Time `json:"sent_at,omitzero"`
}

// Enqueue adds a notification to the outbox in this transaction.
func (t *Tx) Enqueue(o *Outgoing) error {
	b := t.tx.Bucket(bucketOutbox)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	o.Seq = seq
	o.State = OutboxPending
	o.NextAttempt = time.Time{} // due at once, whatever the clock of the caller
	if err := t.putOutgoing(o); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketOutboxCase).Put(outboxCaseKey(o.CaseID, seq), nil); err != nil {
		return err
	}
	return t.pending(o).Put(u64(seq), nil)
}

// pending is the pending index row o belongs in.
func (t *Tx) pending(o *Outgoing) *bolt.Bucket {
	if o.Urgent {
		return t.tx.Bucket(bucketPendingUrgent)
	}
	return t.tx.Bucket(bucketPending)
}

// pendingIndexes are the pending indexes in the order they are sent from.
var pendingIndexes = [][]byte{bucketPendingUrgent, bucketPending}

// outboxCaseKey is a row's key in the outbox's case index.
func outboxCaseKey(caseID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(caseID), seq)
}

// indexOutboxByCase fills the case index from the rows of a store from
// before schema 3, reading only each row's case.
func indexOutboxByCase(tx *bolt.Tx) error {
	index := tx.Bucket(bucketOutboxCase)
	return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
		var row struct {
			CaseID uint64 `json:"case_id"`
		}
		if err := json.Unmarshal(v, &row); err != nil {
			return fmt.Errorf("outbox row %x: %w", k, err)
		}
		return index.Put(outboxCaseKey(row.CaseID, binary.BigEndian.Uint64(k)), nil)
	})
}

// CaseOutbox returns the notifications of a case, in the order they were
// queued, with their messages. It reads the case's rows only.
func (t *Tx) CaseOutbox(caseID uint64) ([]*Outgoing, error) {
	var out []*Outgoing
	rows := t.tx.Bucket(bucketOutbox)
	prefix := u64(caseID)
	cur := t.tx.Bucket(bucketOutboxCase).Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		var o Outgoing
		if ok, err := getJSON(rows, k[8:], &o); err != nil {
			return nil, err
		} else if ok {
			out = append(out, t.withData(&o))
		}
	}
	return out, nil
}

// putOutgoing writes row o: its JSON without the message, if it has one,
// which goes to bucketOutboxData under the same key the first time (it
// never changes). A delivery attempt rewrites the row, not the message,
// and the message is not base64 in the JSON. A row from a schema 1 store,
// message inside, moves it out the first time it is written.
func (t *Tx) putOutgoing(o *Outgoing) error {
	key := u64(o.Seq)
	if data := t.tx.Bucket(bucketOutboxData); o.Data != nil && data.Get(key) == nil {
		if err := data.Put(key, o.Data); err != nil {
			return err
		}
	}
	row := *o
	row.Data = nil
	return putJSON(t.tx.Bucket(bucketOutbox), key, &row)
}

// withData fills in o.Data from bucketOutboxData (a schema 1 row has it
// already).
func (t *Tx) withData(o *Outgoing) *Outgoing {
	if o.Data == nil {
		o.Data = bytes.Clone(t.tx.Bucket(bucketOutboxData).Get(u64(o.Seq)))
	}
	return o
}

// DueOutbox returns up to limit pending notifications whose next attempt is
// due at now, the urgent ones first, oldest first within each, and the
// earliest next attempt among those not yet due (zero if none; only looked
// for when fewer than limit are due). It decodes only the rows it returns:
// the pending indexes hold each row's next attempt, so a long queue costs
// a scan of small keys, not of messages.
func (s *Store) DueOutbox(now time.Time, limit int) (due []*Outgoing, next time.Time, err error) {
	err = s.View(func(t *Tx) error {
		out := t.tx.Bucket(bucketOutbox)
		for _, index := range pendingIndexes {
			c := t.tx.Bucket(index).Cursor()
			for k, v := c.First(); k != nil && len(due) < limit; k, v = c.Next() {
				if at := pendingAt(v); at.After(now) {
					if next.IsZero() || at.Before(next) {
						next = at
					}
					continue
				}
				var o Outgoing
				if ok, err := getJSON(out, k, &o); err != nil {
					return err
				} else if !ok {
					continue
				}
				due = append(due, t.withData(&o))
			}
		}
		return nil
	})
	return due, next, err
}

// pendingAt decodes a pending-index value: the row's next attempt, or zero
// (due at once) for an empty value.
func pendingAt(v []byte) time.Time {
	if len(v) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
}

// OutboxStats summarises the pending notifications.
type OutboxStats struct {
	Pending int
	Oldest  time.Time
}

// OutboxStats counts pending notifications and finds the oldest (the first
// in its index: rows are numbered in the order they were queued).
func (s *Store) OutboxStats() (OutboxStats, error) {
	var st OutboxStats
	err := s.View(func(t *Tx) error {
		for _, index := range pendingIndexes {
			pending := t.tx.Bucket(index)
			st.Pending += pending.Stats().KeyN
			k, _ := pending.Cursor().First()
			if k == nil {
				continue
			}
			var o Outgoing
			if _, err := getJSON(t.tx.Bucket(bucketOutbox), k, &o); err != nil {
				return err
			}
			if st.Oldest.IsZero() || o.CreatedAt.Before(st.Oldest) {
				st.Oldest = o.CreatedAt
			}
		}
		return nil
	})
	return st, err
}

// Delivery is the result of one attempt to send an Outgoing.
type Delivery struct {
	Accepted  []string          // the server took the message for these
	Permanent map[string]string // recipient → 5xx reason: give up on them
	// Retry is set when some recipients (To minus Accepted and Permanent)
	// must be tried again: a 4xx, a network error or an outage.
	Retry     error
	NextRetry time.Time
}

// RecordDelivery applies an attempt's result in one transaction (see
// Tx.RecordDelivery).
func (s *Store) RecordDelivery(seq uint64, d Delivery, now time.Time) error {
	return s.Update(func(t *Tx) error { return t.RecordDelivery(seq, d, now) })
}

// RecordDelivery applies an attempt's result: accepted recipients are
// marked delivered, refused ones failed (with an event on the case so
// agents see it), and the rest stay pending until NextRetry.
func (t *Tx) RecordDelivery(seq uint64, d Delivery, now time.Time) error {
	out := t.tx.Bucket(bucketOutbox)
	var o Outgoing
	if ok, err := getJSON(out, u64(seq), &o); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("outbox row %d: %w", seq, ErrNotFound)
	}
	o.Attempts++
	done := map[string]bool{}
	for _, r := range d.Accepted {
		o.Delivered = append(o.Delivered, r)
		done[r] = true
	}
	for r, reason := range d.Permanent {
		o.Failed = append(o.Failed, r)
		done[r] = true
		if err := t.noteFailure(o.CaseID, o.Kind, r, reason, now); err != nil {
			return err
		}
	}
	var rest []string
	for _, r := range o.To {
		if !done[r] {
			rest = append(rest, r)
		}
	}
	o.To = rest
	switch {
	case len(rest) == 0 && len(o.Delivered) > 0:
		o.State, o.SentAt, o.LastError = OutboxSent, now, ""
	case len(rest) == 0:
		o.State = OutboxFailed
		o.LastError = "every recipient refused the message"
	default:
		o.State = OutboxPending
		if d.Retry != nil {
			o.LastError = d.Retry.Error()
		}
		o.NextAttempt = d.NextRetry
	}
	if err := t.putOutgoing(&o); err != nil {
		return err
	}
	if o.State != OutboxPending {
		return t.pending(&o).Delete(u64(seq))
	}
	var at []byte // due at once
	if !o.NextAttempt.IsZero() {
		at = u64(uint64(o.NextAttempt.UnixNano()))
	}
	return t.pending(&o).Put(u64(seq), at)
}

func (t *Tx) noteFailure(caseID uint64, kind, rcpt, reason string, now time.Time) error {
	c, err := t.Case(caseID)
	if err != nil {
		return err
	}
	c.AddEvent(casemodel.Event{At: now, Actor: "system", Kind: "notification_failed",
		To: rcpt, Note: fmt.Sprintf("%s notification refused: %s", kind, reason)})
	return t.PutCase(c)
}

// Outbox returns every notification of a case, in order.
func (s *Store) Outbox(caseID uint64) (out []*Outgoing, err error) {
	err = s.View(func(t *Tx) error {
		out, err = t.CaseOutbox(caseID)
		return err
	})
	return out, err
}

// AcksSince counts acknowledgements sent to rcpt at or after since.
func (t *Tx) AcksSince(rcpt string, since time.Time) int {
	prefix := joinKey([]byte(rcpt), nil)
	n := 0
	cur := t.tx.Bucket(bucketAckHistory).Cursor()
	for k, _ := cur.Seek(append(bytes.Clone(prefix), u64(uint64(since.UnixNano()))...)); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = cur.Next() {
		n++
	}
	return n
}

// RecordAck notes an acknowledgement to rcpt at now and forgets those to
// rcpt older than keep.
func (t *Tx) RecordAck(rcpt string, now time.Time, keep time.Duration) error {
	b := t.tx.Bucket(bucketAckHistory)
	prefix := joinKey([]byte(rcpt), nil)
	limit := uint64(now.Add(-keep).UnixNano())
	cur := b.Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 && binary.BigEndian.Uint64(k[len(prefix):]) < limit; k, _ = cur.Seek(prefix) {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	key := append(prefix, u64(uint64(now.UnixNano()))...)
	if k, _ := b.Cursor().Seek(key); bytes.Equal(k, key) {
		return nil // one record a recipient and instant, as the global count reads them
	}
	if err := b.Put(key, nil); err != nil {
		return err
	}
	t.noteAck(uint64(now.UnixNano()))
	return nil
}
