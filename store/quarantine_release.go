package store

import (
	"errors"
	"fmt"
)

// ErrNoRequester is wrapped by the refusal to release a quarantined
// message by hand without a usable requester: the message names no sender
// and the agent named none, or named something that is not an address.
var ErrNoRequester = errors.New("no requester")

// QuarantineRecord returns quarantine record seq and, when the message no
// longer stands in quarantine, the record that settled it since: a retry
// or release that superseded seq, or another copy of the message decided
// under the same key. It returns ErrNotFound for an unknown seq and
// ErrNotRetryable for a record that is not a quarantine.
func (t *Tx) QuarantineRecord(seq uint64) (q, settledBy *Decision, err error) {
	q, err = t.decision(u64(seq))
	if err != nil {
		return nil, nil, err
	}
	if q == nil {
		return nil, nil, fmt.Errorf("quarantine record %d: %w (see `caseintake quarantine list --json` for the seq numbers)", seq, ErrNotFound)
	}
	if !q.IsQuarantine() {
		return nil, nil, fmt.Errorf("record %d is %s, not a quarantine: %w", seq, q.Outcome, ErrNotRetryable)
	}
	if by := t.tx.Bucket(bucketQuarantine).Get(u64(seq)); len(by) == 8 {
		d, err := t.decision(by)
		if err != nil {
			return nil, nil, err
		}
		if d != nil {
			return q, d, nil
		}
	}
	standing, err := t.DecisionByKey(q.MessageKey)
	if err != nil {
		return nil, nil, err
	}
	if standing != nil && standing.Seq != q.Seq {
		return q, standing, nil
	}
	return q, nil, nil
}

// QuarantineRecord is Tx.QuarantineRecord in a read transaction of its own.
func (s *Store) QuarantineRecord(seq uint64) (q, settledBy *Decision, err error) {
	err = s.View(func(t *Tx) error {
		q, settledBy, err = t.QuarantineRecord(seq)
		return err
	})
	return q, settledBy, err
}
