package store

import (
	"encoding/binary"
	"slices"
	"time"
)

// AllAcksSince counts acknowledgements to anyone at or after since (the
// global acknowledgement cap). Its first call in a write transaction also
// forgets every record older than since, so that the history of one-off
// recipients does not grow forever. Call it in a write transaction with
// the cap's window.
//
// Only the first call of a transaction reads the history: later ones
// count from what it read and what RecordAck added since. A backlog's
// batch asks once for every new case, and reading the whole window each
// time cost a scan of up to intake.ack_limit_global keys a message.
func (t *Tx) AllAcksSince(since time.Time) (int, error) {
	limit := uint64(since.UnixNano())
	if t.acksRead {
		i, _ := slices.BinarySearch(t.acks, limit)
		t.acks = t.acks[i:]
		return len(t.acks), nil
	}
	b := t.tx.Bucket(bucketAckHistory)
	var stale [][]byte
	var acks []uint64
	err := b.ForEach(func(k, _ []byte) error {
		if len(k) < 9 || k[len(k)-9] != 0 {
			return nil // not a recipient 0x00 nanos key
		}
		if at := binary.BigEndian.Uint64(k[len(k)-8:]); at < limit {
			stale = append(stale, append([]byte(nil), k...))
		} else {
			acks = append(acks, at)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !t.tx.Writable() {
		return len(acks), nil
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	slices.Sort(acks) // the keys are in recipient order
	t.acks, t.acksRead = acks, true
	return len(acks), nil
}

// noteAck adds an acknowledgement at nanos to the transaction's window,
// once AllAcksSince has read it.
func (t *Tx) noteAck(nanos uint64) {
	if t.acksRead {
		i, _ := slices.BinarySearch(t.acks, nanos)
		t.acks = slices.Insert(t.acks, i, nanos)
	}
}
