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

// caseIndex is a bucket whose keys name cases by one of their fields.
type caseIndex struct {
	bucket []byte
	key    func(c *casemodel.Case) []byte // nil: the case is not in it
	since  uint64                         // the schema version that brought it
}

// caseIndexes are kept by PutCase.
var caseIndexes = []caseIndex{
	{bucketByStatus, func(c *casemodel.Case) []byte { return statusKey(c.Status, c.ID) }, 1},
	{bucketByRequester, requesterIndexKey, 5},
	{bucketByAssignee, assigneeIndexKey, 5},
	{bucketByPriority, func(c *casemodel.Case) []byte { return joinKey([]byte(c.Priority), u64(c.ID)) }, 5},
}

func requesterIndexKey(c *casemodel.Case) []byte { return addressKey(c.Requester, c.ID) }

// assigneeIndexKey is nil for an unassigned case: it is in no agent's list.
func assigneeIndexKey(c *casemodel.Case) []byte {
	if c.Assignee == "" {
		return nil
	}
	return addressKey(c.Assignee, c.ID)
}

// PutCase writes c and keeps the indexes (status, requester, assignee,
// priority), and the counts of cases, in step with it.
func (t *Tx) PutCase(c *casemodel.Case) error {
	cases := t.tx.Bucket(bucketCases)
	var was *casemodel.Case // as stored before, nil for a new case
	if v := cases.Get(u64(c.ID)); v != nil {
		var err error
		if was, err = indexedFields(c.ID, v); err != nil {
			return err
		}
	}
	for _, ix := range caseIndexes {
		var oldKey []byte
		if was != nil {
			oldKey = ix.key(was)
		}
		newKey := ix.key(c)
		if bytes.Equal(oldKey, newKey) {
			continue // an unchanged key is not written again: that would dirty its page
		}
		b := t.tx.Bucket(ix.bucket)
		if oldKey != nil {
			if err := b.Delete(oldKey); err != nil {
				return err
			}
		}
		if newKey != nil {
			if err := b.Put(newKey, nil); err != nil {
				return err
			}
		}
	}
	if err := recount(t.tx, was, c); err != nil {
		return err
	}
	return putJSON(cases, u64(c.ID), c)
}

// indexedFields reads of a stored case only what its index keys and
// counts come from: PutCase and the upgrade need no more, and a case's
// messages and history are most of its record.
func indexedFields(id uint64, v []byte) (*casemodel.Case, error) {
	var f struct {
		Status    casemodel.Status   `json:"status"`
		Priority  casemodel.Priority `json:"priority"`
		Requester string             `json:"requester"`
		Assignee  string             `json:"assignee"`
	}
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, fmt.Errorf("case #%d: %w", id, err)
	}
	return &casemodel.Case{ID: id, Status: f.Status, Priority: f.Priority, Requester: f.Requester, Assignee: f.Assignee}, nil
}

// addressKey is a case's key in the requester and assignee indexes: the
// address in lower case, so that a search finds it however it is written.
func addressKey(address string, id uint64) []byte {
	return append(addressPrefix(address), u64(id)...)
}

// addressPrefix is what the keys of an address's cases start with.
func addressPrefix(address string) []byte {
	return joinKey([]byte(strings.ToLower(address)), nil)
}

// indexCases fills the case indexes a store of schema version from
// lacks, in one walk of the cases (an upgrade). The keys go in sorted:
// bbolt splits a bucket's pages only at commit, and inserting a million
// keys in the cases' order moved the growing page's tail at every one
// (over ten minutes, against seconds).
func indexCases(tx *bolt.Tx, from uint64) error {
	var todo []caseIndex
	for _, ix := range caseIndexes {
		if ix.since > from {
			todo = append(todo, ix)
		}
	}
	keys := make([][][]byte, len(todo))
	err := tx.Bucket(bucketCases).ForEach(func(k, v []byte) error {
		c, err := indexedFields(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return err
		}
		for i, ix := range todo {
			if key := ix.key(c); key != nil {
				keys[i] = append(keys[i], key)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, ix := range todo {
		slices.SortFunc(keys[i], bytes.Compare)
		b := tx.Bucket(ix.bucket)
		for _, k := range keys[i] {
			if err := b.Put(k, nil); err != nil {
				return err
			}
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

// ListCases returns matching cases, newest first. With a requester, an
// assignee, a status or a priority it reads only the cases that pass
// those filters, found in their indexes, so the cost follows the result,
// not the store. Only a listing by text alone reads every case.
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
		if ix := f.indexed(); len(ix) > 0 {
			return t.walkIndexed(ix, take)
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

// indexedFilter is a filter an index answers: the keys of the cases that
// pass it are prefix and the case ID.
type indexedFilter struct {
	bucket, prefix []byte
}

// indexed returns the filters of f that an index answers, the one
// likely to pass the fewest cases first: a customer's cases, an agent's,
// a status's, then a priority's (which spans the whole history).
func (f Filter) indexed() []indexedFilter {
	var ix []indexedFilter
	if f.Requester != "" {
		ix = append(ix, indexedFilter{bucketByRequester, addressPrefix(f.Requester)})
	}
	if f.Assignee != "" {
		ix = append(ix, indexedFilter{bucketByAssignee, addressPrefix(f.Assignee)})
	}
	if f.Status != "" {
		ix = append(ix, indexedFilter{bucketByStatus, joinKey([]byte(f.Status), nil)})
	}
	if f.Priority != "" {
		ix = append(ix, indexedFilter{bucketByPriority, joinKey([]byte(f.Priority), nil)})
	}
	return ix
}

// walkIndexed hands take the cases that pass every filter of ix, from the
// highest ID down, until take returns false. It walks the first filter's
// keys and looks each case up in the others' indexes, so that a case is
// read only once it passes them all: an agent's open cases cost their
// open cases, not their whole history.
func (t *Tx) walkIndexed(ix []indexedFilter, take func(*casemodel.Case) bool) error {
	prefix := ix[0].prefix
	cur := t.tx.Bucket(ix[0].bucket).Cursor()
	k, _ := cur.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if k == nil {
		k, _ = cur.Last()
	} else {
		k, _ = cur.Prev()
	}
next:
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = cur.Prev() {
		id := k[len(prefix):]
		for _, o := range ix[1:] {
			if t.tx.Bucket(o.bucket).Get(append(o.prefix[:len(o.prefix):len(o.prefix)], id...)) == nil {
				continue next
			}
		}
		c, err := t.Case(binary.BigEndian.Uint64(id))
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
