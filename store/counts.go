package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/caseintake/caseintake/casemodel"
	bolt "go.etcd.io/bbolt"
)

// The counts /metrics reports on every scrape are kept as cases change
// (since schema 5): counting them there had walked every case's status
// and read every active case.

// CountByStatus returns the number of cases in each status that has any.
func (s *Store) CountByStatus() (map[casemodel.Status]int, error) {
	counts := map[casemodel.Status]int{}
	err := s.View(func(t *Tx) error {
		return readCounts(t.tx, bucketStatusN, func(k string, n int) { counts[casemodel.Status(k)] = n })
	})
	return counts, err
}

// CountActiveByPriority returns the number of cases that are neither
// closed nor archived, per priority that has any.
func (s *Store) CountActiveByPriority() (map[casemodel.Priority]int, error) {
	counts := map[casemodel.Priority]int{}
	err := s.View(func(t *Tx) error {
		return readCounts(t.tx, bucketActiveN, func(k string, n int) { counts[casemodel.Priority(k)] = n })
	})
	return counts, err
}

// readCounts hands put each count in bucket.
func readCounts(tx *bolt.Tx, bucket []byte, put func(string, int)) error {
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("count %q in bucket %s: %d bytes, want 8", k, bucket, len(v))
		}
		put(string(k), int(binary.BigEndian.Uint64(v)))
		return nil
	})
}

// active reports whether a case in status is part of the open workload.
func active(s casemodel.Status) bool {
	return s != casemodel.Closed && s != casemodel.Archived
}

// recount moves case c from the counts it was in as was (nil for a new
// case) to those it is in now.
func recount(tx *bolt.Tx, was, c *casemodel.Case) error {
	byStatus, byPriority := tx.Bucket(bucketStatusN), tx.Bucket(bucketActiveN)
	if was != nil {
		if was.Status == c.Status && was.Priority == c.Priority {
			return nil
		}
		if err := addCount(byStatus, string(was.Status), -1); err != nil {
			return err
		}
		if active(was.Status) {
			if err := addCount(byPriority, string(was.Priority), -1); err != nil {
				return err
			}
		}
	}
	if err := addCount(byStatus, string(c.Status), 1); err != nil {
		return err
	}
	if active(c.Status) {
		return addCount(byPriority, string(c.Priority), 1)
	}
	return nil
}

// addCount adds delta to the count under key in b; a count of 0 is
// removed.
func addCount(b *bolt.Bucket, key string, delta int64) error {
	var n uint64
	if v := b.Get([]byte(key)); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n = uint64(int64(n) + delta)
	if n == 0 {
		return b.Delete([]byte(key))
	}
	return b.Put([]byte(key), u64(n))
}

// countCases fills bucketStatusN and bucketActiveN (the upgrade to schema
// 5): the statuses from the status index, the priorities from the active
// cases.
func countCases(tx *bolt.Tx) error {
	byStatus, byPriority := tx.Bucket(bucketStatusN), tx.Bucket(bucketActiveN)
	statuses := map[casemodel.Status]int64{}
	priorities := map[casemodel.Priority]int64{}
	cases := tx.Bucket(bucketCases)
	err := tx.Bucket(bucketByStatus).ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i <= 0 {
			return nil
		}
		st := casemodel.Status(k[:i])
		statuses[st]++
		if !active(st) {
			return nil
		}
		c, err := indexedFields(binary.BigEndian.Uint64(k[i+1:]), cases.Get(k[i+1:]))
		if err != nil {
			return err
		}
		priorities[c.Priority]++
		return nil
	})
	if err != nil {
		return err
	}
	for st, n := range statuses {
		if err := addCount(byStatus, string(st), n); err != nil {
			return err
		}
	}
	for p, n := range priorities {
		if err := addCount(byPriority, string(p), n); err != nil {
			return err
		}
	}
	return nil
}
