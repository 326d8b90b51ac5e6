package intake

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/caseintake/caseintake/internal/fulldisk"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

// observed passes messages to the real pipeline and remembers what it
// answered.
type observed struct {
	p    *Pipeline
	mu   sync.Mutex
	seen []mailbox.Disposition
	ch   chan struct{}
}

func (o *observed) Stage(ctx context.Context, in *mailbox.Incoming) mailbox.Staged {
	return o.p.Stage(ctx, in)
}

func (o *observed) Commit(ctx context.Context, batch []mailbox.Staged) []mailbox.Disposition {
	ds := o.p.Commit(ctx, batch)
	o.mu.Lock()
	o.seen = append(o.seen, ds...)
	o.mu.Unlock()
	select {
	case o.ch <- struct{}{}:
	default:
	}
	return ds
}

func (o *observed) retries() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, d := range o.seen {
		if d.Action == mailbox.Retry {
			out = append(out, d.Reason)
		}
	}
	return out
}

// A full disk while a message is processed: the message is not
// acknowledged (it stays in the INBOX, no decision recorded), and once
// space returns it is processed normally; the database stays sound.
//
// "raw" fills the disk completely, so storing the raw bytes fails;
// "commit" leaves just room for the raw bytes, so the database
// transaction is the one that meets the full disk.
func TestFullDiskLeavesMessageOnServerAndResumes(t *testing.T) {
	for _, tc := range []struct {
		stage, want string
		room        bool
	}{
		{stage: "raw", want: "raw store"},
		{stage: "commit", want: store.DBFile, room: true},
	} {
		t.Run(tc.stage, func(t *testing.T) { fullDisk(t, tc.room, tc.want) })
	}
}

func fullDisk(t *testing.T, room bool, want string) {
	disk := fulldisk.Small(t, "4m")
	h := newHarness(t, harnessOpts{noWorkers: true, dataDir: disk})
	obs := &observed{p: h.pipeline, ch: make(chan struct{}, 1)}
	w := mailbox.NewWorker(h.cfgs["support"], obs, Cursors(h.store), h.pipeline.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	h.deliver(supportAddr, msg("alice@customer.example", "Before the disk filled", "df1@customer.example"))
	h.waitDecided("df1@customer.example", 1)
	h.waitFolder(supportAddr, "Processed", 1)

	filler := fulldisk.Fill(t, disk)
	big := strings.Replace(msg("bob@customer.example", "While the disk is full", "df2@customer.example"),
		"Hello, please help.", strings.Repeat("a long description of the problem\r\n", 600), 1)
	if room {
		fi, err := os.Stat(filler)
		if err != nil {
			t.Fatal(err)
		}
		pages := int64(len(big)+4095) / 4096
		if err := os.Truncate(filler, fi.Size()-pages*4096); err != nil {
			t.Fatal(err)
		}
	}
	h.deliver(supportAddr, big)
	h.waitFor("the pipeline to answer Retry for the message", func() bool { return len(obs.retries()) > 0 })
	reason := obs.retries()[0]
	if !strings.Contains(reason, "no space left on device") || !strings.Contains(reason, want) {
		t.Errorf("Retry reason %q does not say the disk is full (at %q)", reason, want)
	}
	if ds, _ := h.store.Trace("df2@customer.example"); len(ds) != 0 {
		t.Fatalf("a decision was recorded while the disk was full: %+v", ds)
	}
	if n := len(h.folder(supportAddr, "INBOX")); n != 1 {
		t.Fatalf("INBOX holds %d messages, want the one that could not be stored", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	w.Kick() // the next cycle; the worker waits for one after a Retry
	if d := h.waitDecided("df2@customer.example", 1); d.Outcome != store.OutcomeNewCase {
		t.Fatalf("after space returned: %s, want a new case", d.Outcome)
	}
	h.waitFolder(supportAddr, "Processed", 2)
	h.waitSent(4)
	// bbolt's check reads the shared freelist, so it reports phantom
	// problems while another goroutine commits: stop every writer first.
	cancel()
	<-done
	h.cancel()
	h.wg.Wait()
	for _, err := range h.store.Check() {
		t.Errorf("bbolt check after the full disk: %v", err)
	}
	t.Logf("full disk: %d Retry answers, first: %s", len(obs.retries()), reason)
}
