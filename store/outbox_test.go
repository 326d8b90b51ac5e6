package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rawRow is the outbox row of seq as stored, and its message.
func rawRow(t *testing.T, s *Store, seq uint64) (row, data []byte) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		row = bytes.Clone(tx.Bucket(bucketOutbox).Get(u64(seq)))
		data = bytes.Clone(tx.Bucket(bucketOutboxData).Get(u64(seq)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return row, data
}

// A notification's message is stored once, apart from its row: a
// delivery attempt rewrites the row, not the message, and the message is
// not base64 inside the row's JSON. Readers get it back whole.
func TestOutboxMessageKeptApartFromItsRow(t *testing.T) {
	s := openTest(t)
	msg := []byte("Subject: [Case #1] New case\r\n\r\nGrüße, Köln\r\n")
	if err := s.Update(func(tx *Tx) error {
		return tx.Enqueue(&Outgoing{CaseID: 1, Kind: "team_new", To: []string{"t@example.com"}, Data: msg, CreatedAt: t0})
	}); err != nil {
		t.Fatal(err)
	}
	row, data := rawRow(t, s, 1)
	if strings.Contains(string(row), `"data"`) || !bytes.Equal(data, msg) {
		t.Fatalf("row %s with message %q: want the row without it and the message as it is", row, data)
	}
	due, _, err := s.DueOutbox(t0, 10)
	if err != nil || len(due) != 1 || !bytes.Equal(due[0].Data, msg) {
		t.Fatalf("due = %+v, %v: want the row with its message", due, err)
	}
	if err := s.RecordDelivery(1, Delivery{Retry: errors.New("452 try later"), NextRetry: t0.Add(time.Minute)}, t0); err != nil {
		t.Fatal(err)
	}
	row, data = rawRow(t, s, 1)
	if strings.Contains(string(row), `"data"`) || !bytes.Equal(data, msg) || !strings.Contains(string(row), `"attempts":1`) {
		t.Fatalf("after an attempt: row %s, message %q", row, data)
	}
	rows, err := s.Outbox(1)
	if err != nil || len(rows) != 1 || !bytes.Equal(rows[0].Data, msg) {
		t.Fatalf("Outbox(1) = %+v, %v", rows, err)
	}
}

// A schema 1 store (messages base64 inside the rows) opens as the current
// schema: its pending notification is sent with its message, and the
// first write of the row moves the message out of it.
func TestSchema1StoreUpgradesAndItsRowsKeepTheirMessage(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: old row\r\n\r\nbody\r\n")
	err = s.db.Update(func(tx *bolt.Tx) error {
		old := &Outgoing{Seq: 7, CaseID: 1, Kind: "ack", To: []string{"c@example.com"}, Data: msg, State: OutboxPending, CreatedAt: t0}
		if err := putJSON(tx.Bucket(bucketOutbox), u64(7), old); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put(u64(7), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	s = reopenAsSchema(t, s, 1, bucketOutboxCase, bucketQuarantine)
	due, _, err := s.DueOutbox(t0, 10)
	if err != nil || len(due) != 1 || !bytes.Equal(due[0].Data, msg) {
		t.Fatalf("due = %+v, %v: want the old row with its message", due, err)
	}
	if err := s.RecordDelivery(7, Delivery{Accepted: []string{"c@example.com"}}, t0); err != nil {
		t.Fatal(err)
	}
	row, data := rawRow(t, s, 7)
	if strings.Contains(string(row), `"data"`) || !bytes.Equal(data, msg) {
		t.Fatalf("old row after delivery: %s, message %q; want the message moved out of the row", row, data)
	}
}

// A store written by a newer caseintake is refused with what to do, not
// misread.
func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("schema_version"), u64(schemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir)
	if err == nil {
		s.Close()
		t.Fatal("a store of a newer schema opened")
	}
	if !strings.Contains(err.Error(), "written by a newer caseintake") {
		t.Fatalf("error %q does not say a newer caseintake wrote it", err)
	}
}

// A case's notifications come from the outbox's case index: those of that
// case only, in the order they were queued, however many other cases have.
func TestOutboxOfACaseReadsItsRowsOnly(t *testing.T) {
	s := openTest(t)
	if err := s.Update(func(tx *Tx) error {
		for i := range 600 {
			caseID := uint64(i%300 + 1) // case 1 and case 257 differ in one byte of their key
			o := &Outgoing{CaseID: caseID, Kind: "team_new", MessageID: fmt.Sprintf("n%d@example.test", i), To: []string{"t@example.com"}, Data: []byte("m"), CreatedAt: t0}
			if err := tx.Enqueue(o); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Outbox(257)
	if err != nil || len(rows) != 2 || rows[0].MessageID != "n256@example.test" || rows[1].MessageID != "n556@example.test" {
		t.Fatalf("Outbox(257) = %+v, %v; want n256 then n556", rows, err)
	}
	err = s.View(func(tx *Tx) error {
		o, err := tx.OutgoingOfCase(1, "<N300@example.test>")
		if err != nil || o == nil || o.MessageID != "n300@example.test" || string(o.Data) != "m" {
			t.Errorf("OutgoingOfCase(1, <N300@…>) = %+v, %v", o, err)
		}
		if o, err := tx.OutgoingOfCase(2, "n300@example.test"); err != nil || o != nil {
			t.Errorf("OutgoingOfCase(2, a notification of case 1) = %+v, %v; want none", o, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A store from before schema 3 has no case index: opening it builds one
// from the rows, so that its cases show the notifications queued before.
func TestSchema2StoreIsIndexedByCaseWhenOpened(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Tx) error {
		for i, caseID := range []uint64{5, 9, 5} {
			if err := tx.Enqueue(&Outgoing{CaseID: caseID, Kind: "ack", MessageID: fmt.Sprintf("a%d@example.test", i), Data: []byte("m"), CreatedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// What a schema 2 caseintake left: the rows, no index.
	s = reopenAsSchema(t, s, 2, bucketOutboxCase)
	rows, err := s.Outbox(5)
	if err != nil || len(rows) != 2 || rows[0].MessageID != "a0@example.test" || rows[1].MessageID != "a2@example.test" {
		t.Fatalf("Outbox(5) after the upgrade = %+v, %v; want a0 and a2", rows, err)
	}
}

// reopenAsSchema turns s into what a caseintake of schema version left,
// without the buckets that came later, closes it and opens it again (the
// upgrade runs), and checks that the store is marked with the current
// schema. The store returned is closed when the test ends.
func reopenAsSchema(t *testing.T, s *Store, version uint64, later ...[]byte) *Store {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range later {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema_version"), u64(version))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(s.Dir())
	if err != nil {
		t.Fatalf("open a schema %d store: %v", version, err)
	}
	t.Cleanup(func() { s.Close() })
	var got uint64
	s.db.View(func(tx *bolt.Tx) error {
		got = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get([]byte("schema_version")))
		return nil
	})
	if got != schemaVersion {
		t.Fatalf("schema version %d after opening a schema %d store, want %d", got, version, schemaVersion)
	}
	return s
}

// An escalation queued behind a backlog's notices goes out first, and its
// retries keep it ahead of them; the stats count both queues.
func TestUrgentNotificationsAreDueBeforeTheRestOfTheQueue(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		for i := range 3 {
			if err := tx.Enqueue(&Outgoing{CaseID: uint64(i + 1), Kind: "team_new", To: []string{"team@example.test"}, CreatedAt: t0}); err != nil {
				return err
			}
		}
		return tx.Enqueue(&Outgoing{CaseID: 4, Kind: "urgent", To: []string{"oncall@example.test"}, Urgent: true, CreatedAt: t0.Add(time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
	seqs := func(now time.Time, limit int) []uint64 {
		t.Helper()
		due, _, err := s.DueOutbox(now, limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, o := range due {
			got = append(got, o.Seq)
		}
		return got
	}
	if got := seqs(t0, 2); fmt.Sprint(got) != "[4 1]" {
		t.Fatalf("due first: %v, want the urgent row 4, then the oldest, 1", got)
	}
	if st, err := s.OutboxStats(); err != nil || st.Pending != 4 || !st.Oldest.Equal(t0) {
		t.Fatalf("stats %+v, %v: want 4 pending, the oldest queued at %v", st, err, t0)
	}
	if err := s.RecordDelivery(4, Delivery{Retry: errors.New("451 try later"), NextRetry: t0.Add(time.Minute)}, t0); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t0, 10); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("while the urgent row waits for its retry: %v, want [1 2 3]", got)
	}
	if got := seqs(t0.Add(time.Minute), 2); fmt.Sprint(got) != "[4 1]" {
		t.Fatalf("at its retry: %v, want the urgent row first again", got)
	}
	if err := s.RecordDelivery(4, Delivery{Accepted: []string{"oncall@example.test"}}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t0.Add(time.Minute), 10); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("after the urgent row was sent: %v, want [1 2 3]", got)
	}
}
