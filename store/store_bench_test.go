package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
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
	// The acknowledgement limits, per recipient and in all, as intake
	// checks them before it acknowledges.
	tx.AcksSince(from, now.Add(-time.Hour))
	if _, err := tx.AllAcksSince(now.Add(-time.Hour)); err != nil {
		return err
	}
	if err := tx.RecordAck(from, now, time.Hour); err != nil {
		return err
	}
	return tx.RecordDecision(&Decision{Mailbox: "support", UIDValidity: 1, UID: uint32(i + 1), MessageID: msgID,
		MessageKey: msgID, From: from, Subject: c.Subject, Outcome: "case:new", Signal: "new", CaseID: id,
		RawRef: "sha256:00", Size: 40 << 10, ReceivedAt: now, DecidedAt: now})
}

// BenchmarkCommitNewCase is one message per fsync'd transaction, as the
// pipeline committed before it batched.
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

// BenchmarkCommitBatch commits n new cases per transaction (a backlog's
// batches are up to 500); ns/op is per message, so it compares directly
// with BenchmarkCommitNewCase. file-B/op is the database file's growth
// per message.
func BenchmarkCommitBatch(b *testing.B) {
	for _, n := range []int{10, 100, 500} {
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
			b.StopTimer()
			if fi, err := os.Stat(filepath.Join(s.Dir(), DBFile)); err == nil && i > 0 {
				b.ReportMetric(float64(fi.Size())/float64(i), "file-B/op")
			}
		})
	}
}

// BenchmarkStageAndSyncRaw stores raw messages of typical sizes, streamed
// and from memory, with one SyncRaw per 500 as a backlog batch has it. The
// wall time follows the disk; cpu-ns/op is the process's own cost (user
// and system time), which is what competes with parsing and the IMAP
// server in a backlog.
func BenchmarkStageAndSyncRaw(b *testing.B) {
	stages := []struct {
		name  string
		stage func(*Store, []byte) error
	}{
		{"stream", func(s *Store, buf []byte) error { _, _, err := s.StageRaw(bytes.NewReader(buf)); return err }},
		{"bytes", func(s *Store, buf []byte) error { _, err := s.StageRawBytes(buf); return err }},
	}
	for _, st := range stages {
		for _, size := range []int{4 << 10, 40 << 10, 200 << 10} {
			b.Run(fmt.Sprintf("%s/size=%dKB", st.name, size>>10), func(b *testing.B) {
				s := openBench(b)
				r := rand.New(rand.NewPCG(1, 2))
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				n, cpu0 := 0, cpuTime()
				for b.Loop() {
					for i := 0; i < 16; i++ { // new content, so each write is a new file
						buf[i] = byte(r.Uint32())
					}
					if err := st.stage(s, buf); err != nil {
						b.Fatal(err)
					}
					if n++; n%500 == 0 {
						if err := s.SyncRaw(); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
