package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
)

// The commit path's benchmarks: what one message costs the store when it
// opens a case (raw bytes fsync'd, then one fsync'd transaction with the
// case, its indexes, the decision and two notifications), and what
// batching several messages into one transaction would save. Run them
// with -count 10 and compare runs with benchstat.

func openBench(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// newCaseTx writes what intake writes for a new case.
func newCaseTx(tx *Tx, i int, now time.Time) error {
	id, err := tx.NewCaseID()
	if err != nil {
		return err
	}
	msgID := fmt.Sprintf("bench.%d.%d@client.example", i, now.UnixNano())
	from := fmt.Sprintf("customer%d@client.example", i%500)
	c := casemodel.New(id, "Export job stuck since the update", from, "Customer", "support", casemodel.Normal, now)
	c.Messages = append(c.Messages, casemodel.Message{MessageID: msgID, Direction: casemodel.In, From: from,
		Subject: c.Subject, Date: now, Mailbox: "support", UID: uint32(i + 1), RawRef: "sha256:00", Text: "The nightly export has not run."})
	if err := tx.PutCase(c); err != nil {
		return err
	}
	if err := tx.IndexMessageID(msgID, id); err != nil {
		return err
	}
	for _, kind := range []string{"ack", "team_new"} {
		o := &Outgoing{CaseID: id, Kind: kind, MessageID: "out." + kind + "." + msgID, To: []string{from},
			Data: bytes.Repeat([]byte("x"), 2048), CreatedAt: now}
		if err := tx.Enqueue(o); err != nil {
			return err
		}
		if err := tx.IndexMessageID(o.MessageID, id); err != nil {
			return err
		}
	}
	if err := tx.RecordAck(from, now, time.Hour); err != nil {
		return err
	}
	return tx.RecordDecision(&Decision{Mailbox: "support", UIDValidity: 1, UID: uint32(i + 1), MessageID: msgID,
		MessageKey: msgID, From: from, Subject: c.Subject, Outcome: "case:new", Signal: "new", CaseID: id,
		RawRef: "sha256:00", Size: 40 << 10, ReceivedAt: now, DecidedAt: now})
}

// BenchmarkCommitNewCase is one message per fsync'd transaction, as the
// pipeline commits today.
func BenchmarkCommitNewCase(b *testing.B) {
	s := openBench(b)
	now := time.Now()
	i := 0
	for b.Loop() {
		if err := s.Update(func(tx *Tx) error { return newCaseTx(tx, i, now) }); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCommitBatch commits n new cases per transaction; ns/op is per
// message, so it compares directly with BenchmarkCommitNewCase.
func BenchmarkCommitBatch(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("per_tx=%d", n), func(b *testing.B) {
			s := openBench(b)
			now := time.Now()
			i := 0
			for b.Loop() {
				if i%n == 0 {
					// b.Loop counts messages; every n-th opens a transaction of n.
					if err := s.Update(func(tx *Tx) error {
						for j := range n {
							if err := newCaseTx(tx, i+j, now); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
				i++
			}
		})
	}
}

// BenchmarkStageAndSyncRaw stores raw messages of typical sizes, each
// made durable on its own (a batch shares one SyncRaw).
func BenchmarkStageAndSyncRaw(b *testing.B) {
	for _, size := range []int{4 << 10, 40 << 10, 200 << 10} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			s := openBench(b)
			r := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				for i := 0; i < 16; i++ { // new content, so each write is a new file
					buf[i] = byte(r.Uint32())
				}
				if _, _, err := s.StageRaw(bytes.NewReader(buf)); err != nil {
					b.Fatal(err)
				}
				if err := s.SyncRaw(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionByUID is the store read the pipeline makes first for
// every message.
func BenchmarkDecisionByUID(b *testing.B) {
	s := openBench(b)
	now := time.Now()
	if err := s.Update(func(tx *Tx) error {
		for i := range 10000 {
			if err := newCaseTx(tx, i, now); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, err := s.DecisionByUID("support", 1, uint32(i%10000+1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
