package store

import (
	"errors"
)

// ErrNotRetryable is wrapped by errors about a decision record that cannot
// be retried: not a quarantine, no stored bytes, or bytes still unreadable.
var ErrNotRetryable = errors.New("not retryable")

// Quarantined returns the messages whose standing decision is a
// quarantine, newest first, at most limit (0: all). A message quarantined
// and later decided otherwise (a copy that parsed, or a retry) is not
// listed. It reads the quarantine index, so its cost follows the number
// of quarantine records, not of decisions.
func (s *Store) Quarantined(limit int) ([]*Decision, error) {
	var out []*Decision
	err := s.View(func(t *Tx) error {
		cur := t.tx.Bucket(bucketQuarantine).Cursor()
		for k, by := cur.Last(); k != nil; k, by = cur.Prev() {
			if len(by) != 0 {
				continue // superseded by a retry or release
			}
			d, err := t.decision(k)
			if err != nil {
				return err
			}
			if d == nil || !d.IsQuarantine() {
				continue
			}
			if standing, err := t.DecisionByKey(d.MessageKey); err != nil {
				return err
			} else if standing != nil && standing.Seq != d.Seq {
				continue
			}
			out = append(out, d)
			if limit > 0 && len(out) == limit {
				return nil
			}
		}
		return nil
	})
	return out, err
}
