package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caseintake/caseintake/casemodel"
)

// NewCaseID takes the next case number from the database sequence. It is
// rolled back with the transaction.
func (t *Tx) NewCaseID() (uint64, error) {
	return t.tx.Bucket(bucketCases).NextSequence()
}

// Case returns the case with id, or ErrNotFound.
func (t *Tx) Case(id uint64) (*casemodel.Case, error) {
	var c casemodel.Case
	ok, err := getJSON(t.tx.Bucket(bucketCases), u64(id), &c)
	if err != nil {
		return nil, fmt.Errorf("case #%d: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("case #%d: %w", id, ErrNotFound)
	}
	return &c, nil
}

// PutCase writes c and keeps the status index in step with it.
func (t *Tx) PutCase(c *casemodel.Case) error {
	cases := t.tx.Bucket(bucketCases)
	idx := t.tx.Bucket(bucketByStatus)
	var old casemodel.Case
	if ok, err := getJSON(cases, u64(c.ID), &old); err != nil {
		return err
	} else if ok && old.Status != c.Status {
		if err := idx.Delete(statusKey(old.Status, c.ID)); err != nil {
			return err
		}
	}
	if err := idx.Put(statusKey(c.Status, c.ID), nil); err != nil {
		return err
	}
	return putJSON(cases, u64(c.ID), c)
}

func statusKey(s casemodel.Status, id uint64) []byte {
	return joinKey([]byte(s), u64(id))
}

// IndexMessageID records that a Message-ID (received or sent by us) belongs
// to case id, for threading replies.
func (t *Tx) IndexMessageID(msgID string, id uint64) error {
	if msgID == "" {
		return nil
	}
	return t.tx.Bucket(bucketByMsgID).Put([]byte(msgID), u64(id))
}

// CaseByMessageID returns the case holding msgID, if any.
func (t *Tx) CaseByMessageID(msgID string) (uint64, bool) {
	if msgID == "" {
		return 0, false
	}
	v := t.tx.Bucket(bucketByMsgID).Get([]byte(msgID))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// Filter selects cases for listing. Zero fields match everything.
type Filter struct {
	Status   casemodel.Status
	Priority casemodel.Priority
	Assignee string
	// Requester matches the requester address exactly (case-insensitive).
	Requester string
	// Text matches a substring of the subject (case-insensitive).
	Text   string
	Offset int
	Limit  int // 0: no limit
}

// ListCases returns matching cases, newest first. With a status it walks
// only that status's index, so the cost follows the result, not the store.
func (s *Store) ListCases(f Filter) ([]*casemodel.Case, error) {
	var out []*casemodel.Case
	skipped := 0
	match := func(c *casemodel.Case) bool {
		return (f.Priority == "" || c.Priority == f.Priority) &&
			(f.Assignee == "" || strings.EqualFold(c.Assignee, f.Assignee)) &&
			(f.Requester == "" || strings.EqualFold(c.Requester, f.Requester)) &&
			(f.Text == "" || strings.Contains(strings.ToLower(c.Subject), strings.ToLower(f.Text)))
	}
	// take reports whether the walk should go on.
	take := func(c *casemodel.Case) bool {
		if !match(c) {
			return true
		}
		if skipped < f.Offset {
			skipped++
			return true
		}
		out = append(out, c)
		return f.Limit == 0 || len(out) < f.Limit
	}
	err := s.View(func(t *Tx) error {
		cases := t.tx.Bucket(bucketCases)
		if f.Status != "" {
			prefix := joinKey([]byte(f.Status), nil)
			cur := t.tx.Bucket(bucketByStatus).Cursor()
			// Walk the status's keys from the highest id down.
			k, _ := cur.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
			if k == nil {
				k, _ = cur.Last()
			} else {
				k, _ = cur.Prev()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = cur.Prev() {
				c, err := t.Case(binary.BigEndian.Uint64(k[len(prefix):]))
				if err != nil {
					return err
				}
				if !take(c) {
					return nil
				}
			}
			return nil
		}
		cur := cases.Cursor()
		for k, v := cur.Last(); k != nil; k, v = cur.Prev() {
			var c casemodel.Case
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("case %x: %w", k, err)
			}
			if !take(&c) {
				return nil
			}
		}
		return nil
	})
	return out, err
}

// GetCase returns one case.
func (s *Store) GetCase(id uint64) (*casemodel.Case, error) {
	var c *casemodel.Case
	err := s.View(func(t *Tx) (err error) {
		c, err = t.Case(id)
		return err
	})
	return c, err
}

// CountByStatus counts cases per status from the status index.
func (s *Store) CountByStatus() (map[casemodel.Status]int, error) {
	counts := map[casemodel.Status]int{}
	err := s.View(func(t *Tx) error {
		return t.tx.Bucket(bucketByStatus).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i > 0 {
				counts[casemodel.Status(k[:i])]++
			}
			return nil
		})
	})
	return counts, err
}
