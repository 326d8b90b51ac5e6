package main

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
	bolt "go.etcd.io/bbolt"
)

func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: apt-get install systemd); unit file not verified")
	}
	unit, err := os.ReadFile("../../caseintake.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=2",
		"StateDirectory=caseintake", "ConfigurationDirectory=caseintake", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service", "User=caseintake"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	// verify checks that ExecStart is executable: point it at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "caseintake.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/caseintake", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestNotifyProtocol runs the daemon with a NOTIFY_SOCKET and a watchdog,
// as systemd would, and reads what it sends.
func TestNotifyProtocol(t *testing.T) {
	sd := listenNotify(t)
	_, _, cfg := demoSetup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), serveOptions{}) }()

	read := func(want string) string {
		t.Helper()
		msg, ok := sd.read(want, 10*time.Second)
		if !ok {
			t.Fatalf("no %q within 10 s", want)
		}
		return msg
	}
	if msg := read("READY=1"); !strings.Contains(msg, "STATUS=support: connected") {
		t.Errorf("READY message = %q, want the mailbox state", msg)
	}
	read("WATCHDOG=1")
	read("WATCHDOG=1")
	cancel()
	read("STOPPING=1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWatchdogStopsWhenAWorkerWedges: a worker stuck in its handler gets
// the watchdog pings stopped once it has been quiet too long (here the
// supervisor's clock is moved an hour on rather than waiting the minutes
// that takes; mailbox's TestHungHandlerMakesTheWorkerWedged shows the bound
// itself), and the log names the mailbox.
func TestWatchdogStopsWhenAWorkerWedges(t *testing.T) {
	sd := listenNotify(t)
	m, _, cfg := demoSetup(t)
	if _, err := m.Deliver(demoSupport, "INBOX", []byte("From: a@customer.example\r\nSubject: hang\r\nMessage-ID: <hang@customer.example>\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entered, hang := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := mailbox.OneByOne(mailbox.HandlerFunc(func(context.Context, *mailbox.Incoming) mailbox.Disposition {
		once.Do(func() { close(entered) })
		<-hang // a handler on a hung disk
		return mailbox.Disposition{Action: mailbox.Retry, Reason: "test"}
	}))
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	pool := newMailboxPool(ctx, h, intake.Cursors(st), log)
	pool.start(cfg.Mailboxes[0])
	var skew atomic.Int64
	sup := &supervisor{log: log, pool: pool, now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }}
	done := make(chan struct{})
	go func() { sup.run(ctx); close(done) }()
	defer func() { close(hang); cancel(); <-done; pool.wait() }()

	read := func(want string, within time.Duration) bool {
		_, ok := sd.read(want, within)
		return ok
	}
	if !read("READY=1", 10*time.Second) || !read("WATCHDOG=1", 10*time.Second) {
		t.Fatal("no READY=1 and WATCHDOG=1 from a healthy start")
	}
	<-entered
	skew.Store(int64(time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "no longer feeding the systemd watchdog") {
		if !read("WATCHDOG=1", 200*time.Millisecond) && time.Now().After(deadline) {
			t.Fatalf("the wedged worker was never reported; log:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), cfg.Mailboxes[0].Name+" (no progress since") {
		t.Errorf("the log does not name the wedged mailbox:\n%s", logs.String())
	}
	if read("WATCHDOG=1", time.Second) { // five feed intervals
		t.Fatal("the watchdog is still fed while the worker is wedged")
	}
}

// notifySocket is a NOTIFY_SOCKET as systemd offers it, with a watchdog
// that wants feeding every 200 ms.
type notifySocket struct{ conn *net.UnixConn }

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	return &notifySocket{conn: conn}
}

// read returns the first message containing want that arrives within the
// given time, and whether one did.
func (n *notifySocket) read(want string, within time.Duration) (string, bool) {
	buf := make([]byte, 4096)
	n.conn.SetReadDeadline(time.Now().Add(within))
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return "", false
		}
		if msg := string(buf[:k]); strings.Contains(msg, want) {
			return msg, true
		}
	}
}

// A daemon that upgrades an older store first says so in its log and in
// systemctl status, and how long it took.
func TestUpgradeOfTheStoreIsLoggedAndShownInStatus(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	markSchema(t, dir, 4)
	n := listenNotify(t)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	st, err = openStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, want := range []string{"msg=\"upgrading the database", "from_schema=4", "msg=\"database upgraded\""} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged.String())
		}
	}
	if msg, ok := n.read("STATUS=upgrading the database (schema 4 to", 5*time.Second); !ok {
		t.Errorf("no STATUS= about the upgrade reached systemd (got %q)", msg)
	}
}

// markSchema marks the store in dir as written by schema version v.
func markSchema(t *testing.T, dir string, v uint64) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, store.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, v))
	}); err != nil {
		t.Fatal(err)
	}
}
