package store

import (
	"encoding/binary"
	"time"
)

// AllAcksSince counts acknowledgements to anyone at or after since (the
// global acknowledgement cap) and forgets every record older than since,
// so that the history of one-off recipients does not grow forever. Call it
// in a write transaction with the cap's window.
func (t *Tx) AllAcksSince(since time.Time) (int, error) {
	b := t.tx.Bucket(bucketAckHistory)
	limit := uint64(since.UnixNano())
	var stale [][]byte
	n := 0
	err := b.ForEach(func(k, _ []byte) error {
		if len(k) < 9 || k[len(k)-9] != 0 {
			return nil // not a recipient 0x00 nanos key
		}
		if binary.BigEndian.Uint64(k[len(k)-8:]) < limit {
			stale = append(stale, append([]byte(nil), k...))
		} else {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if t.tx.Writable() {
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}
