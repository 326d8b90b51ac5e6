package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/caseintake/caseintake/casemodel"
)

// CountActiveByPriority counts the cases that are neither closed nor
// archived, per priority. It walks the status index of the active
// statuses and reads those cases only, so its cost follows the open
// workload, not the history.
func (s *Store) CountActiveByPriority() (map[casemodel.Priority]int, error) {
	counts := map[casemodel.Priority]int{}
	err := s.View(func(t *Tx) error {
		cases := t.tx.Bucket(bucketCases)
		cur := t.tx.Bucket(bucketByStatus).Cursor()
		for _, st := range casemodel.Statuses {
			if st == casemodel.Closed || st == casemodel.Archived {
				continue
			}
			prefix := joinKey([]byte(st), nil)
			for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = cur.Next() {
				id := k[len(prefix):]
				var c struct {
					Priority casemodel.Priority `json:"priority"`
				}
				if err := json.Unmarshal(cases.Get(id), &c); err != nil {
					return fmt.Errorf("case #%d: %w", binary.BigEndian.Uint64(id), err)
				}
				counts[c.Priority]++
			}
		}
		return nil
	})
	return counts, err
}
