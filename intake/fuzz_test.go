package intake

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// FuzzHandle drives the pipeline's entry point (store raw, parse,
// classify, decide, commit) with arbitrary bytes. Invariants: no panic
// (not even a recovered one: quarantined:panic fails), one final outcome
// recorded for the UID (never Retry), bounded time and allocation.
// Seeded from every fifth file of the shared corpus.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("From: a@b.example\r\nSubject: Production down\r\nMessage-ID: <x@b.example>\r\n\r\nhelp"))
	f.Add([]byte(dsn("d@mx.example", "caseintake.1.1.ack@example.test", "a@b.example")))
	if _, err := os.Stat(corpusDir); err == nil {
		for i, file := range corpusFiles(f, corpusDir) {
			if i%5 != 0 {
				continue
			}
			if b, err := os.ReadFile(file); err == nil && len(b) <= 256<<10 {
				f.Add(b)
			}
		}
	}
	var (
		once sync.Once
		p    *Pipeline
		st   *store.Store
		mu   sync.Mutex
		uid  uint32
	)
	setup := func(t *testing.T) {
		dir, err := os.MkdirTemp("", "caseintake-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		if st, err = store.Open(dir); err != nil {
			t.Fatal(err)
		}
		r, err := notify.NewRenderer(config.SMTP{From: "Support <" + supportAddr + ">", EnvelopeSender: "<>"},
			config.Notify{Team: []string{teamAddr}, Urgent: []string{oncallAddr}})
		if err != nil {
			t.Fatal(err)
		}
		p = New(st, r, Options{ReopenWindow: 14 * 24 * time.Hour, OwnAddresses: []string{supportAddr}},
			slog.New(slog.DiscardHandler), nil)
	}
	f.Cleanup(func() {
		if st != nil {
			dir := st.Dir()
			st.Close()
			os.RemoveAll(dir)
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() { setup(t) })
		if p == nil {
			t.Skip("setup failed")
		}
		mu.Lock()
		uid++
		u := uid
		mu.Unlock()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		// A hang must be a finding, not a stalled fuzzer: the watchdog
		// fails the input (and so records it) after 10 s.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("Handle of %d bytes did not return within 10 s", len(data)))
		})
		disp := p.Handle(context.Background(), &mailbox.Incoming{
			Mailbox: "support", UIDValidity: 1, UID: u, Size: int64(len(data)),
			InternalDate: time.Unix(1_800_000_000, 0), Body: bytes.NewReader(data),
		})
		watchdog.Stop()
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if disp.Action == mailbox.Retry {
			t.Fatalf("Retry (%s): every input must get a final outcome", disp.Reason)
		}
		d, err := st.DecisionByUID("support", 1, u)
		if err != nil || d == nil {
			t.Fatalf("no decision recorded for the UID (%v)", err)
		}
		if d.Outcome == store.OutcomeQuarantined+":panic" {
			t.Fatalf("processing panicked: %s", d.Signal)
		}
		if (disp.Action == mailbox.Quarantine) != strings.HasPrefix(d.Outcome, store.OutcomeQuarantined+":") {
			t.Fatalf("disposition %v but recorded outcome %s", disp.Action, d.Outcome)
		}
		if took > 5*time.Second {
			t.Fatalf("%d bytes took %v", len(data), took)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*uint64(len(data))+64<<20 {
			t.Fatalf("%d bytes allocated %d bytes", len(data), alloc)
		}
	})
}
