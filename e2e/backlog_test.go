//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// A backlog of more than one batch drains on the real Dovecot with the
// second connection moving each committed batch: every message becomes a
// case and leaves INBOX. Notifications go to a closed port and stay in the
// outbox, so that 600 of them do not load Postfix for the tests after.
func TestBacklogDrainsThroughTheSecondConnection(t *testing.T) {
	s := startStack(t)
	support := s.Mailbox(t, "support")
	count := func(folder string) uint32 {
		t.Helper()
		st, err := support.Client.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("status %s: %v", folder, err)
		}
		return *st.NumMessages
	}
	// STATUS of the selected folder would show this session's stale view.
	if err := support.Client.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := count("INBOX"); n != 0 {
		t.Fatalf("support's INBOX holds %d messages before the test", n)
	}
	const n = 600 // a batch is 500
	ids := map[string]bool{}
	for i := range n {
		id := NewMessageID("backlog")
		ids[id] = true
		raw := fmt.Sprintf("From: customer%d@example.test\r\nTo: support@example.test\r\nSubject: Backlog %d\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nhelp\r\n",
			i, i, id, time.Now().Format(time.RFC1123Z))
		cmd := support.Client.Append("INBOX", int64(len(raw)), nil)
		if _, err := cmd.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	d := startDaemon(t, s, daemonOptions{smtpPort: freePort(t)})
	deadline := time.Now().Add(time.Minute)
	for count("INBOX") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in INBOX after a minute", count("INBOX"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	opened := 0
	for _, c := range d.Cases() {
		if len(c.Messages) > 0 && ids[c.Messages[0].MessageID] {
			opened++
		}
	}
	if opened != n {
		t.Errorf("%d cases opened by the %d backlog messages, want one each", opened, n)
	}
	log, err := os.ReadFile(d.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "second connection open") || strings.Contains(string(log), "cannot open a second connection") {
		t.Errorf("the daemon's log does not show the backlog moved on a second connection")
	}
}
