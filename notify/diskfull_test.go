package notify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/internal/fulldisk"
	"github.com/caseintake/caseintake/store"
)

// logMessages is a slog handler that passes each record's message on,
// dropping it when the channel is full (a worker must never block on it).
type logMessages chan string

func (l logMessages) Enabled(context.Context, slog.Level) bool { return true }
func (l logMessages) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}
func (l logMessages) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logMessages) WithGroup(string) slog.Handler      { return l }

// wait reads messages until one starts with prefix, for up to 10 s.
func (l logMessages) wait(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-l:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no log message %q in 10 s", prefix)
		}
	}
}

// A notification the server took, but whose delivery the full disk kept
// the store from recording, still reads pending: it must not go out
// again (the worker had sent it over and over until the disk had room),
// and nothing else goes out until it is recorded.
func TestDeliveryNotRecordedOnAFullDiskIsNotSentAgain(t *testing.T) {
	disk := fulldisk.Small(t, "4m")
	m, err := devmail.Start(devmail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Recording the delivery to many recipients takes pages the database
	// has yet to claim from the disk: a small row's would fit in its
	// free ones.
	var team []string
	for i := range 300 {
		team = append(team, fmt.Sprintf("agent%03d@team.example.test", i))
	}
	st := queueOneIn(t, disk, testRenderer(t), team...)
	filler := fulldisk.Fill(t, disk)
	logs := make(logMessages, 100)
	w := startWorkerLogging(t, st, m, testRenderer(t), slog.New(logs))
	logs.wait(t, "outbox: cannot record delivery")
	w.Kick()
	logs.wait(t, "outbox: still cannot record a delivery")
	if sent := m.Sent(); len(sent) != 1 {
		t.Fatalf("sent %d times while its delivery could not be recorded, want once", len(sent))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	w.Kick()
	waitRow(t, st, func(o *store.Outgoing) bool { return o.State == store.OutboxSent })
	if sent := m.Sent(); len(sent) != 1 {
		t.Fatalf("sent %d times in all, want once", len(sent))
	}
}
