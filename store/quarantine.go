package store

import (
	"errors"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ErrNotRetryable is wrapped by errors about a decision record that cannot
// be retried: not a quarantine, no stored bytes, or bytes still unreadable.
var ErrNotRetryable = errors.New("not retryable")

// Quarantined returns the messages whose standing decision is a
// quarantine, newest first, at most limit (0: all). A message quarantined
// and later decided otherwise (a copy that parsed, or a retry) is not
// listed. It
// walks the decision log, so its cost follows the number of decisions.
func (s *Store) Quarantined(limit int) ([]*Decision, error) {
	var out []*Decision
	err := s.db.View(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx}
		// Walking newest first meets a retry before the quarantine it
		// supersedes.
		superseded := map[uint64]bool{}
		cur := btx.Bucket(bucketDecisions).Cursor()
		for k, _ := cur.Last(); k != nil; k, _ = cur.Prev() {
			d, err := t.decision(k)
			if err != nil {
				return err
			}
			if d == nil {
				continue
			}
			if d.Supersedes != 0 {
				superseded[d.Supersedes] = true
			}
			if superseded[d.Seq] || !strings.HasPrefix(d.Outcome, OutcomeQuarantined+":") {
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
