package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/caseintake/caseintake/casemodel"
	bolt "go.etcd.io/bbolt"
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

// PutCase writes c and keeps the status and requester indexes, and the
// counts of cases, in step with it.
func (t *Tx) PutCase(c *casemodel.Case) error {
	cases := t.tx.Bucket(bucketCases)
	byStatus, byRequester := t.tx.Bucket(bucketByStatus), t.tx.Bucket(bucketByRequester)
	var old casemodel.Case
	ok, err := getJSON(cases, u64(c.ID), &old)
	if err != nil {
		return err
	}
	if !ok || old.Status != c.Status {
		if ok {
			if err := byStatus.Delete(statusKey(old.Status, c.ID)); err != nil {
				return err
			}
		}
		if err := byStatus.Put(statusKey(c.Status, c.ID), nil); err != nil {
			return err
		}
	}
	var was *casemodel.Case
	if ok {
		was = &old
	}
	if err := recount(t.tx, was, c); err != nil {
		return err
	}
	if oldKey, key := requesterKey(old.Requester, c.ID), requesterKey(c.Requester, c.ID); !ok || !bytes.Equal(oldKey, key) {
		if ok {
			if err := byRequester.Delete(oldKey); err != nil {
				return err
			}
		}
		if err := byRequester.Put(key, nil); err != nil {
			return err
		}
	}
	return putJSON(cases, u64(c.ID), c)
}

// requesterKey is a case's key in the requester index: the address in
// lower case, so that a search finds it however it is written.
func requesterKey(requester string, id uint64) []byte {
	return append(requesterPrefix(requester), u64(id)...)
}

// requesterPrefix is what the keys of requester's cases start with.
func requesterPrefix(requester string) []byte {
	return joinKey([]byte(strings.ToLower(requester)), nil)
}

// indexByRequester fills bucketByRequester from the cases (the upgrade
// to schema 5). The keys go in sorted: bbolt splits a bucket's pages
// only at commit, and inserting a million keys in the cases' order moved
// the growing page's tail at every one (over ten minutes, against seconds).
func indexByRequester(tx *bolt.Tx) error {
	var keys [][]byte
	err := tx.Bucket(bucketCases).ForEach(func(k, v []byte) error {
		var c struct {
			Requester string `json:"requester"`
		}
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("case #%d: %w", binary.BigEndian.Uint64(k), err)
		}
		keys = append(keys, requesterKey(c.Requester, binary.BigEndian.Uint64(k)))
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(keys, bytes.Compare)
	byRequester := tx.Bucket(bucketByRequester)
	for _, k := range keys {
		if err := byRequester.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
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

// ListCases returns matching cases, newest first. With a requester it
// walks only that requester's cases in the requester index, with a status
// only that status's in the status index, so the cost follows the result,
// not the store.
func (s *Store) ListCases(f Filter) ([]*casemodel.Case, error) {
	var out []*casemodel.Case
	skipped := 0
	match := func(c *casemodel.Case) bool {
		return (f.Status == "" || c.Status == f.Status) &&
			(f.Priority == "" || c.Priority == f.Priority) &&
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
		switch {
		case f.Requester != "":
			return t.walkIndexDown(bucketByRequester, requesterPrefix(f.Requester), take)
		case f.Status != "":
			return t.walkIndexDown(bucketByStatus, joinKey([]byte(f.Status), nil), take)
		}
		cur := t.tx.Bucket(bucketCases).Cursor()
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

// walkIndexDown hands take the cases whose keys in the index bucket are
// prefix and a case ID, from the highest ID down, until take returns false.
func (t *Tx) walkIndexDown(bucket, prefix []byte, take func(*casemodel.Case) bool) error {
	cur := t.tx.Bucket(bucket).Cursor()
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

// GetCase returns one case.
func (s *Store) GetCase(id uint64) (*casemodel.Case, error) {
	var c *casemodel.Case
	err := s.View(func(t *Tx) (err error) {
		c, err = t.Case(id)
		return err
	})
	return c, err
}
