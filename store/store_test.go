package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/caseintake/caseintake/casemodel"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSecondOpenFailsFastWithLockedError(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Open = %v, want ErrLocked naming the cause", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("second Open took %v", time.Since(start))
	}
}

func TestCorruptDatabaseRefusedAndKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DBFile)
	garbage := bytes.Repeat([]byte("not a database "), 2000)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "left untouched") {
		t.Fatalf("Open(corrupt) = %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, garbage) {
		t.Fatal("corrupt database was modified")
	}
}

// writeRaw stores r durably, as Commit does for a batch.
func writeRaw(s *Store, r io.Reader) (string, int64, error) {
	ref, size, err := s.StageRaw(r)
	if err == nil {
		err = s.SyncRaw()
	}
	return ref, size, err
}

// writeRawBytes is writeRaw through StageRawBytes, the in-memory path.
func writeRawBytes(s *Store, r io.Reader) (string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	ref, err := s.StageRawBytes(b)
	if err == nil {
		err = s.SyncRaw()
	}
	return ref, int64(len(b)), err
}

// stageAndSync stores b through StageRawBytes and SyncRaw, failing the
// test on an error, and returns its reference.
func stageAndSync(t *testing.T, s *Store, b []byte) string {
	t.Helper()
	ref, _, err := writeRawBytes(s, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// rawWriters are the two ways into the raw store; each test of the raw
// store's rules runs for both.
var rawWriters = []struct {
	name  string
	write func(*Store, io.Reader) (string, int64, error)
}{{"stream", writeRaw}, {"bytes", writeRawBytes}}

// Both ways in give the bytes back under the content key of the bytes,
// the key of a message without a Message-ID.
func TestWriteRawReadsBackUnderItsContentKey(t *testing.T) {
	for _, w := range rawWriters {
		t.Run(w.name, func(t *testing.T) { testContentKey(t, w.write) })
	}
}

func testContentKey(t *testing.T, writeRaw func(*Store, io.Reader) (string, int64, error)) {
	s := openTest(t)
	msg := "Subject: hi\r\n\r\nbody\r\n"
	ref, size, err := writeRaw(s, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(msg)) {
		t.Fatalf("ref=%s size=%d", ref, size)
	}
	ref2, _, err := writeRaw(s, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{ref, ref2} {
		if key, err := s.ContentKey(r); err != nil || key != ContentKeyOf([]byte(msg)) {
			t.Fatalf("same bytes: %s has content key %s (%v), want %s", r, key, err, ContentKeyOf([]byte(msg)))
		}
	}
	f, err := s.OpenRaw(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	if string(got) != msg {
		t.Fatalf("raw = %q", got)
	}
	tmps, _ := filepath.Glob(filepath.Join(s.Dir(), rawDir, ".incoming-*"))
	if len(tmps) != 0 {
		t.Fatalf("temp files left: %v", tmps)
	}
	if _, err := s.OpenRaw("sha256:../../etc/passwd"); err == nil {
		t.Fatal("OpenRaw accepted a path")
	}
}

// A crash before SyncRaw can leave a raw file cut short under its final
// name; storing the same bytes again replaces it instead of trusting it.
func TestStageRawReplacesAFileCutShort(t *testing.T) {
	s := openTest(t)
	msg := "Subject: cut\r\n\r\nthe whole body\r\n"
	ref, _, err := writeRaw(s, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	path := s.rawPath(strings.TrimPrefix(ref, RawPrefix))
	if err := os.WriteFile(path, []byte(msg[:10]), 0o600); err != nil {
		t.Fatal(err)
	}
	if again, _, err := writeRaw(s, strings.NewReader(msg)); err != nil || again != ref {
		t.Fatalf("stored again: %s, %v", again, err)
	}
	if got, _ := os.ReadFile(path); string(got) != msg {
		t.Fatalf("raw file holds %q, want the whole message", got)
	}
}

func TestOpenSweepsTempFilesLeftByACrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := writeRaw(s, strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	left := filepath.Join(dir, rawDir, ".incoming-123")
	if err := os.WriteFile(left, []byte("half a message"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left after Open: %v", err)
	}
	f, err := s.OpenRaw(ref)
	if err != nil {
		t.Fatalf("stored message lost: %v", err)
	}
	f.Close()
}

func TestPutCaseKeepsStatusIndexInStep(t *testing.T) {
	s := openTest(t)
	var ids []uint64
	err := s.Update(func(tx *Tx) error {
		for i := 0; i < 3; i++ {
			id, err := tx.NewCaseID()
			if err != nil {
				return err
			}
			ids = append(ids, id)
			if err := tx.PutCase(casemodel.New(id, "subject", "a@example.com", "", "support", casemodel.Normal, t0)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 1 || ids[2] != 3 {
		t.Fatalf("ids = %v, want 1..3", ids)
	}
	err = s.Update(func(tx *Tx) error {
		c, err := tx.Case(2)
		if err != nil {
			return err
		}
		c.SetStatus(casemodel.InProgress, "agent:ann", "", t0)
		return tx.PutCase(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := s.ListCases(Filter{Status: casemodel.Open})
	inProgress, _ := s.ListCases(Filter{Status: casemodel.InProgress})
	if len(open) != 2 || open[0].ID != 3 || open[1].ID != 1 {
		t.Fatalf("open = %v", caseIDs(open))
	}
	if len(inProgress) != 1 || inProgress[0].ID != 2 {
		t.Fatalf("in_progress = %v", caseIDs(inProgress))
	}
	counts, _ := s.CountByStatus()
	if counts[casemodel.Open] != 2 || counts[casemodel.InProgress] != 1 {
		t.Fatalf("counts = %v", counts)
	}
	page, _ := s.ListCases(Filter{Limit: 1, Offset: 1})
	if len(page) != 1 || page[0].ID != 2 {
		t.Fatalf("page = %v", caseIDs(page))
	}
	if errs := s.Check(); len(errs) > 0 {
		t.Fatalf("bbolt check: %v", errs)
	}
}

func TestFailedTransactionRollsBackCaseSequence(t *testing.T) {
	s := openTest(t)
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.NewCaseID(); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	_ = s.Update(func(tx *Tx) error {
		id, err := tx.NewCaseID()
		if id != 1 {
			t.Errorf("after rollback NewCaseID = %d, want 1", id)
		}
		return err
	})
}

func TestDecisionIndexes(t *testing.T) {
	s := openTest(t)
	first := &Decision{Mailbox: "support", UIDValidity: 7, UID: 3, MessageID: "a@x", MessageKey: "a@x", Outcome: OutcomeNewCase, CaseID: 1}
	dup := &Decision{Mailbox: "sales", UIDValidity: 9, UID: 1, MessageID: "a@x", MessageKey: "a@x", Outcome: OutcomeIgnored + ":duplicate", CaseID: 1}
	err := s.Update(func(tx *Tx) error {
		if err := tx.RecordDecision(first); err != nil {
			return err
		}
		return tx.RecordDecision(dup)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		d, err := tx.DecisionByKey("a@x")
		if err != nil || d == nil || d.Seq != first.Seq {
			t.Errorf("DecisionByKey = %+v, %v; want the deciding record", d, err)
		}
		return nil
	})
	if d, _ := s.DecisionByUID("sales", 9, 1); d == nil || d.Seq != dup.Seq {
		t.Errorf("DecisionByUID(sales) = %+v", d)
	}
	if d, _ := s.DecisionByUID("support", 8, 3); d != nil {
		t.Errorf("another UIDVALIDITY must not match: %+v", d)
	}
	trace, _ := s.Trace("a@x")
	if len(trace) != 2 {
		t.Fatalf("trace = %d records", len(trace))
	}
}

func TestOutboxDelivery(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutCase(casemodel.New(1, "s", "a@example.com", "", "support", casemodel.Normal, t0)); err != nil {
			return err
		}
		return tx.Enqueue(&Outgoing{CaseID: 1, Kind: "team_new", To: []string{"t1@example.com", "t2@example.com", "t3@example.com"}, CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	due, _, _ := s.DueOutbox(t0, 10)
	if len(due) != 1 {
		t.Fatalf("due = %d", len(due))
	}
	seq := due[0].Seq
	// t1 accepted, t2 refused for good, t3 deferred.
	err = s.RecordDelivery(seq, Delivery{
		Accepted:  []string{"t1@example.com"},
		Permanent: map[string]string{"t2@example.com": "550 no such user"},
		Retry:     errors.New("452 mailbox full"), NextRetry: t0.Add(time.Minute),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if due, next, _ := s.DueOutbox(t0, 10); len(due) != 0 || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("before retry: due=%d next=%v", len(due), next)
	}
	if st, _ := s.OutboxStats(); st.Pending != 1 || !st.Oldest.Equal(t0) {
		t.Fatalf("stats while deferred = %+v, want 1 pending since %v", st, t0)
	}
	due, _, _ = s.DueOutbox(t0.Add(time.Minute), 10)
	if len(due) != 1 || strings.Join(due[0].To, ",") != "t3@example.com" || due[0].Attempts != 1 {
		t.Fatalf("retry row = %+v", due)
	}
	if err := s.RecordDelivery(seq, Delivery{Accepted: []string{"t3@example.com"}}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rows, _ := s.Outbox(1)
	if len(rows) != 1 || rows[0].State != OutboxSent || len(rows[0].Failed) != 1 || len(rows[0].Delivered) != 2 {
		t.Fatalf("row = %+v", rows[0])
	}
	st, _ := s.OutboxStats()
	if st.Pending != 0 {
		t.Fatalf("pending = %d", st.Pending)
	}
	c, _ := s.GetCase(1)
	last := c.Events[len(c.Events)-1]
	if last.Kind != "notification_failed" || last.To != "t2@example.com" || !strings.Contains(last.Note, "550") {
		t.Fatalf("case event = %+v", last)
	}
}

func TestAckHistory(t *testing.T) {
	s := openTest(t)
	_ = s.Update(func(tx *Tx) error {
		for i := range 5 {
			if err := tx.RecordAck("a@example.com", t0.Add(time.Duration(i)*20*time.Minute), time.Hour); err != nil {
				return err
			}
		}
		return tx.RecordAck("b@example.com", t0, time.Hour)
	})
	_ = s.View(func(tx *Tx) error {
		// acks at 0, 20, 40, 60, 80 min; the first two were pruned by later writes.
		if n := tx.AcksSince("a@example.com", t0.Add(30*time.Minute)); n != 3 {
			t.Errorf("AcksSince = %d, want 3", n)
		}
		if n := tx.AcksSince("b@example.com", t0.Add(-time.Minute)); n != 1 {
			t.Errorf("AcksSince(b) = %d, want 1", n)
		}
		return nil
	})
}

func TestCursorRoundTrip(t *testing.T) {
	s := openTest(t)
	if c, err := s.LoadCursor("support"); err != nil || c != (Cursor{}) {
		t.Fatalf("empty cursor = %+v, %v", c, err)
	}
	if err := s.SaveCursor("support", Cursor{UIDValidity: 5, LastUID: 42}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCursor("support"); c.LastUID != 42 || c.UIDValidity != 5 {
		t.Fatalf("cursor = %+v", c)
	}
}

func caseIDs(cs []*casemodel.Case) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestQuarantinedListsStandingQuarantinesNewestFirst(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		for _, d := range []*Decision{
			{Mailbox: "support", UID: 1, MessageKey: "a@x", Outcome: OutcomeQuarantined + ":limit:depth"},
			{Mailbox: "support", UID: 2, MessageKey: "b@x", Outcome: OutcomeNewCase, CaseID: 1},
			{Mailbox: "support", UID: 3, MessageKey: "c@x", Outcome: OutcomeQuarantined + ":too-large"},
			// c@x arrived again, smaller, and became a case: no longer quarantined.
			{Mailbox: "support", UID: 4, MessageKey: "c@x", Outcome: OutcomeNewCase, CaseID: 2},
			{Mailbox: "support", UID: 5, MessageKey: "d@x", Outcome: OutcomeQuarantined + ":loop"},
		} {
			if err := tx.RecordDecision(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Quarantined(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].MessageKey != "d@x" || q[1].MessageKey != "a@x" {
		t.Fatalf("quarantined = %+v", q)
	}
	if q, _ := s.Quarantined(1); len(q) != 1 || q[0].MessageKey != "d@x" {
		t.Fatalf("limit 1 = %+v", q)
	}
}

func TestMessageIDKeyIsMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := st.MessageIDKey()
	if len(key) != messageIDKeySize || bytes.Equal(key, make([]byte, messageIDKeySize)) {
		t.Fatalf("key = %x, want %d random bytes", key, messageIDKeySize)
	}
	st.Close()
	st, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if again := st.MessageIDKey(); !bytes.Equal(again, key) {
		t.Fatalf("key changed across a restart: %x, then %x", key, again)
	}
	other, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if bytes.Equal(other.MessageIDKey(), key) {
		t.Fatal("two data directories share one key")
	}
}

// Messages held in memory go to packs: written at once by many helpers,
// across pack boundaries and a restart, each reads back whole under its
// own reference.
func TestPackedMessagesReadBack(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.packs.limit = 10 << 10 // a new pack every few messages
	want := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			b := bytes.Repeat([]byte{byte(i)}, 1000+37*i)
			ref, err := s.StageRawBytes(b)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want[ref] = b
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := s.SyncRaw(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir) // a restart starts a new pack and reads the old ones
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last, err := s.StageRawBytes([]byte("after the restart"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SyncRaw(); err != nil {
		t.Fatal(err)
	}
	want[last] = []byte("after the restart")
	if len(want) != 201 {
		t.Fatalf("%d distinct references for 201 messages", len(want))
	}
	packs := map[string]bool{}
	for ref, b := range want {
		pr, ok := parsePackRef(ref)
		if !ok {
			t.Fatalf("%s is not a pack reference", ref)
		}
		packs[pr.id] = true
		r, err := s.OpenRaw(ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s reads back %d bytes (%v), want %d", ref, len(got), err, len(b))
		}
		sum := sha256.Sum256(b)
		if key, err := s.ContentKey(ref); err != nil || key != RawPrefix+hex.EncodeToString(sum[:]) || key != ContentKeyOf(b) {
			t.Fatalf("%s: content key %s (%v) is not the SHA-256 of the bytes", ref, key, err)
		}
	}
	if len(packs) < 10 {
		t.Errorf("%d packs for ~1 MB at 10 KB a pack", len(packs))
	}
	lastPack, _ := parsePackRef(last)
	for ref := range want {
		if p, _ := parsePackRef(ref); ref != last && p.id == lastPack.id {
			t.Fatalf("the restarted store appended to pack %s of the run before", p.id)
		}
	}
}

// A reference that is malformed, or points past the end of its pack (a
// pack cut short), is refused with the reason.
func TestOpenRawRefusesBadReferences(t *testing.T) {
	s := openTest(t)
	ref := stageAndSync(t, s, []byte("Subject: x\r\n\r\nbody\r\n"))
	pr, _ := parsePackRef(ref)
	fi, err := os.Stat(filepath.Join(s.Dir(), rawDir, packDir, pr.id+".pack"))
	if err != nil {
		t.Fatal(err)
	}
	end := fi.Size() - pr.off // the pack ends in padding after the message
	for _, bad := range []string{
		"sha256:../../etc/passwd",
		strings.Replace(ref, pr.id, "../../../etc", 1),
		strings.Replace(ref, pr.id, strings.Repeat("0", 16), 1),
		packRef{id: pr.id, off: pr.off, size: end + 1}.String(),
		fmt.Sprintf("%s%s:-1:%d", PackPrefix, pr.id, pr.size),
	} {
		if r, err := s.OpenRaw(bad); err == nil {
			r.Close()
			t.Errorf("OpenRaw(%q) succeeded", bad)
		}
	}
	short := packRef{id: pr.id, off: pr.off, size: end + 100}.String()
	if _, err := s.OpenRaw(short); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("OpenRaw past the end of the pack: %v, want it called truncated", err)
	}
}

// Stores written before the pack references dropped the hash hold
// "sha256:<hex>@<pack>:<offset>:<length>": they still open, and name their
// content key without a read.
func TestOlderPackReferencesStillOpen(t *testing.T) {
	s := openTest(t)
	msg := []byte("Subject: old\r\n\r\nstored by the build before\r\n")
	ref := stageAndSync(t, s, msg)
	pr, _ := parsePackRef(ref)
	pr.sum = strings.TrimPrefix(ContentKeyOf(msg), RawPrefix)
	old := pr.String()
	if !strings.HasPrefix(old, RawPrefix) || !strings.Contains(old, "@"+pr.id+":") {
		t.Fatalf("older reference %s", old)
	}
	r, err := s.OpenRaw(old)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, msg) {
		t.Fatalf("%s reads %q", old, got)
	}
	// The key comes from the reference: it is not recomputed.
	pr.sum = strings.Repeat("a", 64)
	if key, err := s.ContentKey(pr.String()); err != nil || key != RawPrefix+pr.sum {
		t.Fatalf("content key of %s: %s, %v", pr.String(), key, err)
	}
}

// A pack that took its last message stays open until SyncRaw has synced
// it, and is closed then: SyncRaw fsyncs the packs written to and the
// directories that got entries, nothing else.
func TestSyncRawSyncsAndClosesRetiredPacks(t *testing.T) {
	s := openTest(t)
	s.packs.limit = 10 << 10
	for i := range 50 {
		if _, err := s.StageRawBytes(bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	packs, dirs := s.pending.packs, s.pending.dirs
	if len(packs) < 5 {
		t.Fatalf("%d packs pending for 50 KB at 10 KB a pack", len(packs))
	}
	if want := filepath.Join(s.Dir(), rawDir, packDir); !dirs[want] || !dirs[filepath.Dir(want)] {
		t.Fatalf("directories pending: %v, want the packs directory and its parent", dirs)
	}
	if n := openPacks(t); n != len(packs) {
		t.Fatalf("%d pack files open before the sync, want %d", n, len(packs))
	}
	if err := s.SyncRaw(); err != nil {
		t.Fatal(err)
	}
	if n := openPacks(t); n != 1 {
		t.Fatalf("%d pack files open after the sync, want the current one", n)
	}
	if len(s.pending.packs) != 0 || len(s.pending.dirs) != 0 {
		t.Fatalf("still pending after SyncRaw: %v %v", s.pending.packs, s.pending.dirs)
	}
	// A pack whose every byte was synced already is retired by the next
	// message that does not fit: the sync after that closes it too.
	if _, err := s.StageRawBytes(bytes.Repeat([]byte{'x'}, 10<<10)); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncRaw(); err != nil {
		t.Fatal(err)
	}
	if n := openPacks(t); n != 1 {
		t.Fatalf("%d pack files open after a rollover and a sync, want the current one", n)
	}
}

// openPacks counts this process's open descriptors on pack files.
func openPacks(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasSuffix(target, ".pack") {
			n++
		}
	}
	return n
}

// A pack's chunks are written as they fill, not all at SyncRaw: the
// bytes of a backlog batch reach the file while it downloads.
func TestPackChunksReachTheFileBeforeSyncRaw(t *testing.T) {
	s := openTest(t)
	msg := bytes.Repeat([]byte("x"), 100<<10)
	for range 2*chunkSize/len(msg) + 1 {
		if _, err := s.StageRawBytes(msg); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := s.packs.cur.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 2*chunkSize {
		t.Fatalf("the pack file holds %d bytes before SyncRaw, want the two full chunks, %d", fi.Size(), 2*chunkSize)
	}
}

// Where the file system takes O_DIRECT, a pack's bytes go to the disk past
// the page cache: none of them is cached, dirty or not, once written.
func TestPackWritesBypassThePageCache(t *testing.T) {
	s := openTest(t)
	msg := bytes.Repeat([]byte("y"), 300<<10)
	for range 4 {
		if _, err := s.StageRawBytes(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SyncRaw(); err != nil {
		t.Fatal(err)
	}
	p := s.packs.cur
	if !takesDirect(t, s.Dir()) {
		t.Skipf("the file system of %s refuses O_DIRECT: packs are written through the page cache", s.Dir())
	}
	if !p.direct.Load() {
		t.Fatal("the pack is written through the page cache on a file system that takes O_DIRECT")
	}
	r := unix.CachestatRange{Off: 0, Len: 4 * 300 << 10}
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(p.f.Fd()), &r, &st, 0); err != nil {
		t.Skipf("cannot tell cached pages without cachestat (Linux 6.5 or later): %v", err)
	}
	if st.Cache+st.Dirty+st.Writeback != 0 {
		t.Fatalf("after direct writes the page cache holds %d pages of the pack (%d dirty, %d under writeback), want none",
			st.Cache, st.Dirty, st.Writeback)
	}
}

// A direct write the file system refuses for its alignment is done through
// the page cache instead, and so is every write to that pack after it.
func TestPackRefusedDirectWriteGoesThroughThePageCache(t *testing.T) {
	s := openTest(t)
	if _, err := s.StageRawBytes([]byte("first")); err != nil {
		t.Fatal(err)
	}
	p := s.packs.cur
	if !p.direct.Load() {
		t.Skipf("the file system of %s refuses O_DIRECT", s.Dir())
	}
	// 100 bytes at an unaligned address: a length and memory no direct
	// write takes.
	c := &chunk{buf: append(make([]byte, 1, 101), bytes.Repeat([]byte("z"), 100)...)[1:], off: 3 * directAlign, n: 100}
	s.packs.mu.Lock()
	s.packs.startWrite(p, c)
	s.packs.mu.Unlock()
	s.packs.write(p, c)
	if p.direct.Load() {
		t.Skipf("the file system of %s took an unaligned direct write", s.Dir())
	}
	if p.werr != nil || p.retired {
		t.Fatalf("the write failed (%v) or retired the pack (%v), want it written through the page cache", p.werr, p.retired)
	}
	got := make([]byte, 100)
	if f, err := os.Open(p.f.Name()); err != nil {
		t.Fatal(err)
	} else if _, err := f.ReadAt(got, 3*directAlign); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("z"), 100)) {
		t.Fatalf("read back %q (%v)", got, err)
	}
	ref := stageAndSync(t, s, []byte("after the fallback"))
	if got := readRef(t, s, ref); got != "after the fallback" {
		t.Fatalf("%s reads %q", ref, got)
	}
}

// Helpers that each stage a message and sync, as batches do, while others
// roll packs over: every message whose SyncRaw succeeded reads back whole.
func TestConcurrentStageAndSyncAcrossRollovers(t *testing.T) {
	s := openTest(t)
	s.packs.limit = 6 << 10 // a rollover every few messages
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 150 {
				b := bytes.Repeat([]byte{byte('a' + g)}, 500+i*13%2000)
				ref, err := s.StageRawBytes(b)
				if err == nil {
					err = s.SyncRaw()
				}
				if err != nil {
					t.Error(err)
					return
				}
				r, err := s.OpenRaw(ref)
				if err != nil {
					t.Errorf("%s after its SyncRaw: %v", ref, err)
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s after its SyncRaw reads %d bytes (%v), want %d", ref, len(got), err, len(b))
					return
				}
			}
		})
	}
	wg.Wait()
}

// A chunk write that fails (here: the pack's descriptor closed under it)
// fails the next SyncRaw with the pack's name, so no transaction refers to
// bytes that never reached the disk, and the next message goes to a new
// pack.
func TestFailedChunkWriteFailsSyncRaw(t *testing.T) {
	s := openTest(t)
	if _, err := s.StageRawBytes([]byte("first")); err != nil {
		t.Fatal(err)
	}
	p := s.packs.cur
	p.f.Close()
	big := bytes.Repeat([]byte("w"), chunkSize) // fills the chunk: written at once
	if _, err := s.StageRawBytes(big); err != nil {
		t.Fatalf("StageRawBytes reported the write: %v (its error belongs to SyncRaw)", err)
	}
	err := s.SyncRaw()
	if err == nil || !strings.Contains(err.Error(), p.id) || !strings.Contains(err.Error(), "write") {
		t.Fatalf("SyncRaw after a failed write: %v, want the write's error naming pack %s", err, p.id)
	}
	ref, err := s.StageRawBytes([]byte("after the failure"))
	if err != nil {
		t.Fatal(err)
	}
	if pr, _ := parsePackRef(ref); pr.id == p.id {
		t.Fatalf("a message went to pack %s after a write to it failed", p.id)
	}
}

// losePackWrites makes every later write to the current pack fail while
// its fdatasync still succeeds, as after an I/O error the kernel has
// given up on: the file is reopened read-only. It returns the pack.
func losePackWrites(t *testing.T, s *Store) *pack {
	t.Helper()
	p := s.packs.cur
	ro, err := os.Open(p.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	p.f.Close()
	p.f = ro
	return p
}

// A message staged into a pack before a write to it failed is not
// durable, although the sync that reported the failure was another
// batch's and the pack's fdatasync now succeeds.
func TestMakeDurableRefusesAMessageOfAPackThatLostAWrite(t *testing.T) {
	s := openTest(t)
	first, err := s.StageRawBytes([]byte("the first batch's message"))
	if err != nil {
		t.Fatal(err)
	}
	p := losePackWrites(t, s)
	// Fills the chunk, so it is written (and fails) before any sync.
	second, err := s.StageRawBytes(bytes.Repeat([]byte("n"), chunkSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDurable([]string{first}); err == nil || !strings.Contains(err.Error(), p.id) {
		t.Fatalf("MakeDurable of the first batch: %v, want the failed write to pack %s", err, p.id)
	}
	err = s.MakeDurable([]string{second})
	if err == nil || !strings.Contains(err.Error(), p.id) || !strings.Contains(err.Error(), "lost a write") {
		t.Fatalf("MakeDurable of the next batch, in the same pack: %v, want an error naming pack %s", err, p.id)
	}
	third, err := s.StageRawBytes([]byte("after the failure"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDurable([]string{third}); err != nil {
		t.Fatalf("MakeDurable of a message in a new pack: %v", err)
	}
	if got := readRef(t, s, third); got != "after the failure" {
		t.Fatalf("read back %q", got)
	}
}

// SyncRaw writes the chunk being filled padded to a block boundary, and the
// next message starts on that boundary: a synced block is never written
// again.
func TestSyncRawPadsThePackToTheNextBlock(t *testing.T) {
	s := openTest(t)
	first := stageAndSync(t, s, []byte("first message"))
	second := stageAndSync(t, s, []byte("second message"))
	if pr, _ := parsePackRef(second); pr.off != directAlign {
		t.Fatalf("the message after a sync starts at %d, want %d", pr.off, directAlign)
	}
	if fi, err := s.packs.cur.f.Stat(); err != nil || fi.Size() != 2*directAlign {
		t.Fatalf("pack size after two syncs: %v (%v), want %d", fi.Size(), err, 2*directAlign)
	}
	if a, b := readRef(t, s, first), readRef(t, s, second); a != "first message" || b != "second message" {
		t.Fatalf("read back %q and %q", a, b)
	}
}

// takesDirect reports whether files in dir open with O_DIRECT.
func takesDirect(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "direct-probe"), os.O_WRONLY|os.O_CREATE|unix.O_DIRECT, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// readRef reads the raw bytes under ref.
func readRef(t *testing.T, s *Store, ref string) string {
	t.Helper()
	r, err := s.OpenRaw(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAllAcksSinceCountsWithinATransaction: after the first count of a
// transaction, which reads the history, later counts include the acks
// recorded since and drop those that left the window, as a fresh read of
// the history would.
func TestAllAcksSinceCountsWithinATransaction(t *testing.T) {
	s := openTest(t)
	if err := s.Update(func(tx *Tx) error {
		for i, rcpt := range []string{"a@example.com", "b@example.com", "c@example.com"} {
			if err := tx.RecordAck(rcpt, t0.Add(time.Duration(i)*20*time.Minute), time.Hour); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fresh := func(since time.Time) int { // what a transaction of its own counts
		var n int
		if err := s.Update(func(tx *Tx) (err error) { n, err = tx.AllAcksSince(since); return err }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	now := t0.Add(50 * time.Minute) // acks at 0, 20 and 40 minutes are in the hour
	err := s.Update(func(tx *Tx) error {
		if n, err := tx.AllAcksSince(now.Add(-time.Hour)); err != nil || n != 3 {
			t.Errorf("first count = %d, %v; want 3", n, err)
		}
		for _, rcpt := range []string{"d@example.com", "e@example.com", "e@example.com"} {
			if err := tx.RecordAck(rcpt, now, time.Hour); err != nil {
				return err
			}
		}
		// e@ twice at the same instant is one record.
		if n, err := tx.AllAcksSince(now.Add(-time.Hour)); err != nil || n != 5 {
			t.Errorf("count after two more recipients = %d, %v; want 5", n, err)
		}
		// 30 minutes later the ack at 0 has left the window.
		if n, err := tx.AllAcksSince(now.Add(30*time.Minute - time.Hour)); err != nil || n != 4 {
			t.Errorf("count half an hour later = %d, %v; want 4", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := fresh(now.Add(30*time.Minute - time.Hour)); n != 4 {
		t.Errorf("a transaction of its own counts %d; want 4", n)
	}
}

// A store from before schema 4 has no quarantine index: opening it builds
// one from the decision log, retries included, so that the quarantine
// lists and shows as before.
func TestSchema3StoreIsIndexedByQuarantineWhenOpened(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	q := func(key string) *Decision {
		return &Decision{Mailbox: "support", UIDValidity: 1, MessageKey: key, Outcome: OutcomeQuarantined + ":mime", DecidedAt: t0}
	}
	var first, second, retry *Decision
	if err := s.Update(func(tx *Tx) error {
		first, second = q("a@example.test"), q("b@example.test")
		for i, d := range []*Decision{first, {Mailbox: "support", UIDValidity: 1, UID: 2, MessageKey: "c@example.test", Outcome: OutcomeNewCase}, second} {
			d.UID = uint32(i + 1)
			if err := tx.RecordDecision(d); err != nil {
				return err
			}
		}
		retry = &Decision{Mailbox: "support", UIDValidity: 1, UID: 1, MessageKey: "a@example.test", Outcome: OutcomeNewCase, Supersedes: first.Seq}
		return tx.RecordDecision(retry)
	}); err != nil {
		t.Fatal(err)
	}
	s = reopenAsSchema(t, s, 3, bucketQuarantine)
	listed, err := s.Quarantined(0)
	if err != nil || len(listed) != 1 || listed[0].Seq != second.Seq {
		t.Fatalf("Quarantined after the upgrade = %+v, %v; want record %d only", listed, err, second.Seq)
	}
	if _, settled, err := s.QuarantineRecord(first.Seq); err != nil || settled == nil || settled.Seq != retry.Seq {
		t.Fatalf("QuarantineRecord(%d) settled by %+v, %v; want the retry %d", first.Seq, settled, err, retry.Seq)
	}
}

// putCases stores a new case in each of statuses, in order, and returns
// their IDs.
func putCases(t *testing.T, s *Store, statuses ...casemodel.Status) []uint64 {
	t.Helper()
	return putNewCases(t, s, len(statuses), func(i int, c *casemodel.Case) {
		if statuses[i] != c.Status {
			c.SetStatus(statuses[i], "agent:ann", "", t0)
		}
	})
}

// putNewCases stores n new cases, each as shape leaves it, in one
// transaction, and returns their IDs.
func putNewCases(t *testing.T, s *Store, n int, shape func(i int, c *casemodel.Case)) []uint64 {
	t.Helper()
	var ids []uint64
	if err := s.Update(func(tx *Tx) error {
		for i := range n {
			id, err := tx.NewCaseID()
			if err != nil {
				return err
			}
			c := casemodel.New(id, "subject", "a@example.com", "", "support", casemodel.Normal, t0)
			shape(i, c)
			if err := tx.PutCase(c); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// statusIndexCounts counts the status index's keys: what CountByStatus
// must agree with.
func statusIndexCounts(t *testing.T, s *Store) map[casemodel.Status]int {
	t.Helper()
	counts := map[casemodel.Status]int{}
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketByStatus).ForEach(func(k, _ []byte) error {
			counts[casemodel.Status(k[:bytes.IndexByte(k, 0)])]++
			return nil
		})
	})
	return counts
}

func TestCountsFollowStatusAndPriorityChanges(t *testing.T) {
	s := openTest(t)
	ids := putCases(t, s, casemodel.Open, casemodel.Open, casemodel.Open, casemodel.SolutionProvided)
	change := func(id uint64, to casemodel.Status, prio casemodel.Priority) error {
		return s.Update(func(tx *Tx) error {
			c, err := tx.Case(id)
			if err != nil {
				return err
			}
			if to != c.Status {
				c.SetStatus(to, "agent:ann", "", t0)
			}
			c.Priority = prio
			return tx.PutCase(c)
		})
	}
	for _, step := range []struct {
		id   uint64
		to   casemodel.Status
		prio casemodel.Priority
	}{
		{ids[0], casemodel.InProgress, casemodel.Normal},
		{ids[1], casemodel.SolutionProvided, casemodel.Normal},
		{ids[1], casemodel.Open, casemodel.Urgent}, // both at once
		{ids[3], casemodel.Closed, casemodel.Normal},
		{ids[3], casemodel.Closed, casemodel.High}, // a closed case counts in no priority
		{ids[2], casemodel.Open, casemodel.Normal}, // no change
		{ids[0], casemodel.InProgress, casemodel.Low},
	} {
		if err := change(step.id, step.to, step.prio); err != nil {
			t.Fatal(err)
		}
	}
	// A failed transaction changes no count.
	boom := errors.New("boom")
	if err := s.Update(func(tx *Tx) error {
		c, _ := tx.Case(ids[2])
		c.SetStatus(casemodel.Closed, "agent:ann", "", t0)
		if err := tx.PutCase(c); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	counts, err := s.CountByStatus()
	if err != nil {
		t.Fatal(err)
	}
	want := map[casemodel.Status]int{casemodel.Open: 2, casemodel.InProgress: 1, casemodel.Closed: 1}
	if !maps.Equal(counts, want) {
		t.Fatalf("CountByStatus = %v, want %v", counts, want)
	}
	if index := statusIndexCounts(t, s); !maps.Equal(counts, index) {
		t.Fatalf("CountByStatus = %v, but the status index holds %v", counts, index)
	}
	prios, err := s.CountActiveByPriority()
	wantPrios := map[casemodel.Priority]int{casemodel.Urgent: 1, casemodel.Normal: 1, casemodel.Low: 1}
	if err != nil || !maps.Equal(prios, wantPrios) {
		t.Fatalf("CountActiveByPriority = %v, %v; want %v", prios, err, wantPrios)
	}
	// The priority index followed the same changes.
	checkListings(t, s, []listing{
		{Filter{Priority: casemodel.Urgent}, []uint64{ids[1]}},
		{Filter{Priority: casemodel.High}, []uint64{ids[3]}},
		{Filter{Priority: casemodel.Normal}, []uint64{ids[2]}},
		{Filter{Priority: casemodel.Low}, []uint64{ids[0]}},
	})
}

func TestSchema4StoreIsCountedWhenOpened(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	putCases(t, s, casemodel.Open, casemodel.Closed, casemodel.OnHold, casemodel.Archived)
	s = reopenAsSchema(t, s, 4, bucketStatusN, bucketActiveN)
	counts, err := s.CountByStatus()
	want := map[casemodel.Status]int{casemodel.Open: 1, casemodel.OnHold: 1, casemodel.Closed: 1, casemodel.Archived: 1}
	if err != nil || !maps.Equal(counts, want) {
		t.Fatalf("CountByStatus after the upgrade = %v, %v; want %v", counts, err, want)
	}
	prios, err := s.CountActiveByPriority()
	if err != nil || !maps.Equal(prios, map[casemodel.Priority]int{casemodel.Normal: 2}) {
		t.Fatalf("CountActiveByPriority after the upgrade = %v, %v; want normal 2", prios, err)
	}
	// And they are kept from there on.
	putCases(t, s, casemodel.Open)
	if counts, _ := s.CountByStatus(); counts[casemodel.Open] != 2 {
		t.Fatalf("open after one more case = %d, want 2", counts[casemodel.Open])
	}
}

// putRequesterCases stores a new open case from each of requesters, in
// order, and returns their IDs.
func putRequesterCases(t *testing.T, s *Store, requesters ...string) []uint64 {
	t.Helper()
	return putNewCases(t, s, len(requesters), func(i int, c *casemodel.Case) { c.Requester = requesters[i] })
}

// spoilCase overwrites a case's record with bytes no walk can decode: a
// listing that reads it fails.
func spoilCase(t *testing.T, s *Store, id uint64) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCases).Put(u64(id), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
}

// A search by requester reads that requester's cases only, however the
// address is written, newest first, and with the other filters applied.
func TestListCasesByRequesterReadsTheirCasesOnly(t *testing.T) {
	s := openTest(t)
	ids := putRequesterCases(t, s, "Alice@Customer.example", "bob@customer.example", "alice@customer.example",
		"alice@customer.example.org", "ALICE@CUSTOMER.EXAMPLE")
	if err := s.Update(func(tx *Tx) error {
		c, err := tx.Case(ids[2])
		if err != nil {
			return err
		}
		c.SetStatus(casemodel.Closed, "agent:ann", "", t0)
		return tx.PutCase(c)
	}); err != nil {
		t.Fatal(err)
	}
	spoilCase(t, s, ids[1])
	spoilCase(t, s, ids[3])
	checkListings(t, s, []listing{
		{Filter{Requester: "alice@customer.example"}, []uint64{ids[4], ids[2], ids[0]}},
		{Filter{Requester: "aLiCe@customer.EXAMPLE", Status: casemodel.Open}, []uint64{ids[4], ids[0]}},
		{Filter{Requester: "alice@customer.example", Limit: 1, Offset: 1}, []uint64{ids[2]}},
		{Filter{Requester: "carol@customer.example"}, nil},
	})
}

// listing is a filter and the case IDs its listing must return, in order.
type listing struct {
	f    Filter
	want []uint64
}

// checkListings lists each filter of ls. An error means the listing read
// a case spoilt (spoilCase) as one it should not read.
func checkListings(t *testing.T, s *Store, ls []listing) {
	t.Helper()
	for _, l := range ls {
		got, err := s.ListCases(l.f)
		if err != nil {
			t.Fatalf("ListCases(%+v): %v (it read a case its filters exclude)", l.f, err)
		}
		if !slices.Equal(caseIDs(got), l.want) {
			t.Errorf("ListCases(%+v) = %v, want %v", l.f, caseIDs(got), l.want)
		}
	}
}

// A store from before schema 5 has neither the counts nor the requester,
// assignee and priority indexes: opening it makes them from its cases.
func TestSchema4StoreIsIndexedByRequesterAssigneeAndPriorityWhenOpened(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	requesters := []string{"alice@customer.example", "bob@customer.example", "Alice@customer.example"}
	agents := []string{"ann@example.com", "", "ann@example.com"}
	prios := []casemodel.Priority{casemodel.Normal, casemodel.Urgent, casemodel.Urgent}
	ids := putNewCases(t, s, 3, func(i int, c *casemodel.Case) {
		c.Requester, c.Priority = requesters[i], prios[i]
		c.Assign(agents[i], "agent:lead", t0)
	})
	s = reopenAsSchema(t, s, 4, bucketStatusN, bucketByRequester, bucketByAssignee, bucketByPriority)
	spoilCase(t, s, ids[1]) // bob's, unassigned, urgent
	checkListings(t, s, []listing{
		{Filter{Requester: "alice@customer.example"}, []uint64{ids[2], ids[0]}},
		{Filter{Assignee: "ann@example.com"}, []uint64{ids[2], ids[0]}},
		{Filter{Assignee: "ann@example.com", Priority: casemodel.Urgent}, []uint64{ids[2]}},
		{Filter{Priority: casemodel.Normal}, []uint64{ids[0]}},
	})
}

// An agent's list reads the cases assigned to them only, and follows
// assignments as they change.
func TestListCasesByAssigneeFollowsAssignments(t *testing.T) {
	s := openTest(t)
	agents := []string{"ann@example.com", "Ann@Example.com", "bob@example.com", "", "ann@example.com"}
	ids := putNewCases(t, s, len(agents), func(i int, c *casemodel.Case) { c.Assign(agents[i], "agent:lead", t0) })
	assign := func(id uint64, agent string) {
		t.Helper()
		if err := s.Update(func(tx *Tx) error {
			c, err := tx.Case(id)
			if err != nil {
				return err
			}
			c.Assign(agent, "agent:lead", t0)
			return tx.PutCase(c)
		}); err != nil {
			t.Fatal(err)
		}
	}
	assign(ids[4], "")                // unassigned
	assign(ids[2], "ann@example.com") // from bob to ann
	assign(ids[3], "bob@example.com") // newly assigned
	spoilCase(t, s, ids[4])           // in nobody's list now: never read
	checkListings(t, s, []listing{
		{Filter{Assignee: "ANN@example.com"}, []uint64{ids[2], ids[1], ids[0]}},
		{Filter{Assignee: "bob@example.com"}, []uint64{ids[3]}},
	})
}

// With several indexed filters, a case that fails one of them is never
// read: an agent's open cases cost those, not their whole history.
func TestListCasesReadsOnlyCasesPassingEveryIndexedFilter(t *testing.T) {
	s := openTest(t)
	type spec struct {
		requester, agent string
		status           casemodel.Status
		prio             casemodel.Priority
	}
	specs := []spec{
		{"alice@customer.example", "ann@example.com", casemodel.Open, casemodel.Urgent},
		{"alice@customer.example", "ann@example.com", casemodel.Archived, casemodel.Urgent},
		{"bob@customer.example", "ann@example.com", casemodel.Open, casemodel.Normal},
		{"alice@customer.example", "bob@example.com", casemodel.Open, casemodel.Urgent},
		{"alice@customer.example", "ann@example.com", casemodel.Closed, casemodel.Normal},
		{"alice@customer.example", "ann@example.com", casemodel.Open, casemodel.Normal},
	}
	ids := putNewCases(t, s, len(specs), func(i int, c *casemodel.Case) {
		c.Requester = specs[i].requester
		c.Priority = specs[i].prio
		c.Assign(specs[i].agent, "agent:lead", t0)
		if specs[i].status != c.Status {
			c.SetStatus(specs[i].status, "agent:ann", "", t0)
		}
	})
	for _, i := range []int{1, 4} {
		spoilCase(t, s, ids[i]) // ann's and alice's, one urgent and one normal, but not open
	}
	checkListings(t, s, []listing{
		{Filter{Assignee: "ann@example.com", Status: casemodel.Open}, []uint64{ids[5], ids[2], ids[0]}},
		{Filter{Requester: "alice@customer.example", Status: casemodel.Open}, []uint64{ids[5], ids[3], ids[0]}},
		{Filter{Requester: "alice@customer.example", Assignee: "ann@example.com", Status: casemodel.Open}, []uint64{ids[5], ids[0]}},
		{Filter{Priority: casemodel.Urgent, Status: casemodel.Open}, []uint64{ids[3], ids[0]}},
		{Filter{Assignee: "ann@example.com", Priority: casemodel.Normal, Status: casemodel.Open}, []uint64{ids[5], ids[2]}},
	})
}

// Open says it is about to upgrade an older store, with what it reads,
// and says nothing once the store is current.
func TestOpenReportsAnUpgradeBeforeMakingIt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	putCases(t, s, casemodel.Open, casemodel.Closed, casemodel.Open)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("schema_version"), u64(4))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var told []Upgrade
	report := OnUpgrade(func(u Upgrade) { told = append(told, u) })
	for range 2 {
		s, err := Open(dir, report)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if want := []Upgrade{{From: 4, To: schemaVersion, Cases: 3}}; !slices.Equal(told, want) {
		t.Fatalf("upgrades reported over two opens = %+v, want %+v", told, want)
	}
}
