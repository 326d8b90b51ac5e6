package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Outcomes of a message, as recorded in its Decision.
const (
	OutcomeNewCase     = "case:new"
	OutcomeAppended    = "case:appended"
	OutcomeIgnored     = "ignored"     // Outcome is "ignored:<reason>"
	OutcomeQuarantined = "quarantined" // Outcome is "quarantined:<reason>"
)

// Decision records what happened to one message and why, so that an
// operator can always answer "what happened to that mail?".
type Decision struct {
	Seq         uint64   `json:"seq"`
	Mailbox     string   `json:"mailbox"`
	UIDValidity uint32   `json:"uidvalidity"`
	UID         uint32   `json:"uid"`
	MessageID   string   `json:"message_id,omitempty"`
	MessageKey  string   `json:"message_key"` // Message-ID, or the content hash when there is none
	From        string   `json:"from,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	Outcome     string   `json:"outcome"` // case:new, case:appended, ignored:<reason>, quarantined:<reason>
	Signal      string   `json:"signal"`  // what decided it, e.g. "subject tag #12"
	CaseID      uint64   `json:"case_id,omitempty"`
	RawRef      string   `json:"raw_ref,omitempty"`
	Size        int64    `json:"size"`
	Warnings    []string `json:"warnings,omitempty"`
	// Supersedes is the quarantine this record replaces after an
	// operator's retry (0 for a first decision).
	Supersedes uint64    `json:"supersedes,omitempty"`
	ReceivedAt time.Time `json:"received_at"` // IMAP INTERNALDATE
	DecidedAt  time.Time `json:"decided_at"`
}

// Deciding reports whether the record settles its message key for good:
// every outcome does except a duplicate notice, which only points at the
// record that did.
func (d *Decision) Deciding() bool { return d.Outcome != OutcomeIgnored+":duplicate" }

// IsQuarantine reports whether d put its message in quarantine.
func (d *Decision) IsQuarantine() bool { return strings.HasPrefix(d.Outcome, OutcomeQuarantined+":") }

// RecordDecision stores d (assigning d.Seq) with its indexes: the mailbox
// UID, the trace by Message-ID and, for a deciding record, the message key.
func (t *Tx) RecordDecision(d *Decision) error {
	b := t.tx.Bucket(bucketDecisions)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	d.Seq = seq
	if err := putJSON(b, u64(seq), d); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByUID).Put(uidKey(d.Mailbox, d.UIDValidity, d.UID), u64(seq)); err != nil {
		return err
	}
	traceID := d.MessageID
	if traceID == "" {
		traceID = d.MessageKey
	}
	if err := t.tx.Bucket(bucketTrace).Put(joinKey([]byte(traceID), u64(seq)), nil); err != nil {
		return err
	}
	if err := noteQuarantine(t.tx.Bucket(bucketQuarantine), d); err != nil {
		return err
	}
	if d.Deciding() && d.MessageKey != "" {
		return t.tx.Bucket(bucketByMsgKey).Put([]byte(d.MessageKey), u64(seq))
	}
	return nil
}

// noteQuarantine keeps the quarantine index up to date with record d: a
// quarantine joins it, and a record superseding one is noted beside it
// (the first only: a settled quarantine is not retried again).
func noteQuarantine(index *bolt.Bucket, d *Decision) error {
	if d.IsQuarantine() {
		if err := index.Put(u64(d.Seq), nil); err != nil {
			return err
		}
	}
	if d.Supersedes != 0 && len(index.Get(u64(d.Supersedes))) == 0 {
		return index.Put(u64(d.Supersedes), u64(d.Seq))
	}
	return nil
}

// indexQuarantine fills the quarantine index from the decision log of a
// store from before schema 4.
func indexQuarantine(tx *bolt.Tx) error {
	index := tx.Bucket(bucketQuarantine)
	return tx.Bucket(bucketDecisions).ForEach(func(k, v []byte) error {
		var d Decision
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decision %x: %w", k, err)
		}
		return noteQuarantine(index, &d)
	})
}

// DecisionBySeq returns one record by its sequence number, or ErrNotFound.
func (s *Store) DecisionBySeq(seq uint64) (*Decision, error) {
	var d *Decision
	err := s.View(func(t *Tx) error {
		var err error
		d, err = t.decision(u64(seq))
		return err
	})
	if err == nil && d == nil {
		err = fmt.Errorf("decision %d: %w", seq, ErrNotFound)
	}
	return d, err
}

func (t *Tx) decision(seq []byte) (*Decision, error) {
	var d Decision
	ok, err := getJSON(t.tx.Bucket(bucketDecisions), seq, &d)
	if err != nil || !ok {
		return nil, err
	}
	return &d, nil
}

// DecisionByKey returns the deciding record of a message key, if any.
func (t *Tx) DecisionByKey(key string) (*Decision, error) {
	if key == "" {
		return nil, nil
	}
	seq := t.tx.Bucket(bucketByMsgKey).Get([]byte(key))
	if seq == nil {
		return nil, nil
	}
	return t.decision(seq)
}

// DecisionByUID returns the record made for a mailbox UID, if any: a
// message committed but not yet acknowledged when the daemon stopped.
func (s *Store) DecisionByUID(mailbox string, uidValidity, uid uint32) (*Decision, error) {
	var d *Decision
	err := s.View(func(t *Tx) error {
		seq := t.tx.Bucket(bucketByUID).Get(uidKey(mailbox, uidValidity, uid))
		if seq == nil {
			return nil
		}
		var err error
		d, err = t.decision(seq)
		return err
	})
	return d, err
}

// Trace returns every record about a Message-ID (or message key), oldest first.
func (s *Store) Trace(msgID string) ([]*Decision, error) {
	var out []*Decision
	prefix := joinKey([]byte(msgID), nil)
	err := s.View(func(t *Tx) error {
		cur := t.tx.Bucket(bucketTrace).Cursor()
		for k, _ := cur.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = cur.Next() {
			d, err := t.decision(k[len(prefix):])
			if err != nil {
				return err
			}
			if d != nil {
				out = append(out, d)
			}
		}
		return nil
	})
	return out, err
}

func uidKey(mailbox string, uidValidity, uid uint32) []byte {
	return joinKey([]byte(mailbox), []byte(strconv.FormatUint(uint64(uidValidity), 10)), binary.BigEndian.AppendUint32(nil, uid))
}

// Cursor is how far a mailbox worker has got: see mailbox.Cursor.
type Cursor struct {
	UIDValidity uint32 `json:"uidvalidity"`
	LastUID     uint32 `json:"last_uid"`
}

// LoadCursor returns the stored cursor of a mailbox (zero if none).
func (s *Store) LoadCursor(mailbox string) (Cursor, error) {
	var c Cursor
	err := s.View(func(t *Tx) error {
		_, err := getJSON(t.tx.Bucket(bucketCursors), []byte(mailbox), &c)
		return err
	})
	return c, err
}

// SaveCursor stores the cursor of a mailbox.
func (s *Store) SaveCursor(mailbox string, c Cursor) error {
	return s.Update(func(t *Tx) error {
		return putJSON(t.tx.Bucket(bucketCursors), []byte(mailbox), c)
	})
}
