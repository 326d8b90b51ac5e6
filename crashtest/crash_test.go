// Package crashtest kills the real caseintake binary with SIGKILL at random
// moments while it works through a mailbox, restarts it each time, and then
// checks the invariants of design.md: every message has exactly one
// outcome, no case exists twice, no acknowledgement is sent twice except
// the one re-send a kill between SMTP acceptance and "marked sent" may
// cause (with the same Message-ID), the database passes bbolt's check and
// the outbox is drained.
//
// The default run (300 messages, 120 kills) takes well under two minutes;
// longer runs:
//
//	go test ./crashtest -run Crash -crash.kills=1000 -crash.messages=2000 -crash.seed=7 -timeout 30m
//
// or CRASH_KILLS / CRASH_MESSAGES / CRASH_SEED in the environment.
package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/store"
)

var (
	flagKills    = flag.Int("crash.kills", envInt("CRASH_KILLS", 120), "SIGKILLs across the run (env CRASH_KILLS)")
	flagMessages = flag.Int("crash.messages", envInt("CRASH_MESSAGES", 300), "messages in the mailbox (env CRASH_MESSAGES)")
	flagSeed     = flag.Uint64("crash.seed", uint64(envInt("CRASH_SEED", 20261123)), "random seed for the mail mix and the kill moments (env CRASH_SEED)")
	flagMaxDelay = flag.Duration("crash.maxdelay", 350*time.Millisecond, "longest time a daemon runs before it is killed")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

const (
	support  = "support@crash.test"
	password = "crash"
	team     = "team@crash.test"
)

// kind is what a generated message is, and so which outcome it must get.
type kind int

const (
	request kind = iota
	reply
	automated
)

func (k kind) outcome() string {
	switch k {
	case request:
		return store.OutcomeNewCase
	case reply:
		return store.OutcomeAppended
	default:
		return store.OutcomeIgnored + ":automated"
	}
}

type genMsg struct {
	id   string // Message-ID without brackets
	kind kind
	from string
	raw  []byte
}

// generate builds the mail mix: about 60% new requests (at most three per
// sender, well below the acknowledgement cap), 25% replies to an earlier
// request by its requester, 15% automated mail of several flavours.
func generate(r *rand.Rand, n int) []genMsg {
	var out []genMsg
	var requests []genMsg
	perSender := map[string]int{}
	date := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for i := range n {
		date = date.Add(time.Minute)
		id := fmt.Sprintf("crash-%04d@customers.test", i)
		p := r.IntN(100)
		switch {
		case p < 60 || len(requests) == 0:
			from := fmt.Sprintf("customer%03d@customers.test", r.IntN(n/3+1))
			for perSender[from] >= 3 {
				from = fmt.Sprintf("customer%03d@customers.test", r.IntN(n)+n)
			}
			perSender[from]++
			subj := fmt.Sprintf("Request %d: printer %d does not work", i, r.IntN(1000))
			if r.IntN(10) == 0 {
				subj = fmt.Sprintf("Production Down at site %d", i)
			}
			m := genMsg{id: id, kind: request, from: from, raw: mailText(from, subj, id, date, "", "Hello,\r\nplease help.\r\n")}
			requests = append(requests, m)
			out = append(out, m)
		case p < 85:
			orig := requests[r.IntN(len(requests))]
			m := genMsg{id: id, kind: reply, from: orig.from,
				raw: mailText(orig.from, "Re: your request", id, date, "In-Reply-To: <"+orig.id+">\r\nReferences: <"+orig.id+">\r\n", "More details.\r\n")}
			out = append(out, m)
		default:
			from := fmt.Sprintf("robot%03d@customers.test", i)
			var extra, subj string
			switch r.IntN(3) {
			case 0:
				extra, subj = "Auto-Submitted: auto-replied\r\n", "Out of office"
			case 1:
				extra, subj = "Precedence: bulk\r\nList-Id: <news.customers.test>\r\n", "Newsletter"
			default:
				from = "MAILER-DAEMON@customers.test"
				extra, subj = "Return-Path: <>\r\nAuto-Submitted: auto-replied\r\n", "Undelivered Mail Returned to Sender"
			}
			out = append(out, genMsg{id: id, kind: automated, from: from, raw: mailText(from, subj, id, date, extra, "I am a machine.\r\n")})
		}
	}
	return out
}

func mailText(from, subject, id string, date time.Time, extra, body string) []byte {
	return []byte("From: " + from + "\r\nTo: " + support + "\r\nSubject: " + subject + "\r\nDate: " + date.Format(time.RFC1123Z) +
		"\r\nMessage-ID: <" + id + ">\r\n" + extra + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
}

// buildBinary compiles cmd/caseintake into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "caseintake")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/caseintake/caseintake/cmd/caseintake")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caseintake failed (the crash test needs the real binary): %v\n%s", err, out)
	}
	return bin
}

func writeConfig(t *testing.T, dir string, m *devmail.Server) (cfgPath, sock, token string) {
	t.Helper()
	token = "crash-test-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "api.sock")
	cfg := fmt.Sprintf(`data_dir: %s
mailboxes:
  - name: support
    address: %s
    imap: {host: %s, port: %d, security: none, username: %s, password: %s}
    poll_interval: 1s
smtp:
  host: %s
  port: %d
  security: none
  from: "Crash Support <%s>"
notify:
  team: [%s]
api:
  listen: unix:%s
  token_file: %s
log:
  level: info
  format: json
`, filepath.Join(dir, "data"), support, m.IMAPHost, m.IMAPPort, support, password,
		m.SMTPHost, m.SMTPPort, support, team, sock, tokenFile)
	cfgPath = filepath.Join(dir, "caseintake.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, sock, token
}

// daemon is one running caseintake serve.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
}

func startDaemon(t *testing.T, bin, cfg string, log *os.File, run int) *daemon {
	t.Helper()
	fmt.Fprintf(log, "=== run %d\n", run)
	cmd := exec.Command(bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s serve: %v", bin, err)
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	return d
}

// stop sends sig and waits (bounded) for the process to end; it returns
// how the process ended.
func (d *daemon) stop(t *testing.T, sig syscall.Signal, limit time.Duration) error {
	t.Helper()
	_ = d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		return err
	case <-time.After(limit):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("daemon (pid %d) did not exit within %v of %v", d.cmd.Process.Pid, limit, sig)
		return nil
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestCrashKill9KeepsInvariants(t *testing.T) {
	kills, n, seed := *flagKills, *flagMessages, *flagSeed
	t.Logf("crash test: %d messages, %d kills, seed %d (repeat with -crash.seed=%d)", n, kills, seed, seed)
	started := time.Now()
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	t.Logf("built %s in %v", bin, time.Since(started).Round(time.Millisecond))

	mailSys, err := devmail.Start(devmail.Options{Users: map[string]string{support: password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mailSys.Close() })
	cfg, sock, token := writeConfig(t, dir, mailSys)
	logPath := filepath.Join(dir, "daemon.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the daemon log %s:\n%s", logPath, tail(logPath, 60))
		}
	})

	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	msgs := generate(r, n)
	next := 0
	deliverUpTo := func(k int) {
		for ; next < k && next < len(msgs); next++ {
			if _, err := mailSys.Deliver(support, "INBOX", msgs[next].raw); err != nil {
				t.Fatalf("deliver message %d: %v", next, err)
			}
		}
	}

	// The kill loop: new mail arrives before each start, so kills land
	// while messages are fetched, committed, acknowledged and notified.
	loopStart := time.Now()
	for i := range kills {
		deliverUpTo((i + 1) * len(msgs) / kills)
		offset := logSize(t, logPath)
		d := startDaemon(t, bin, cfg, logFile, i)
		// One kill in five lands anywhere from exec on (store open, IMAP
		// login); the others a random time after the daemon says it
		// started, so that a slow, loaded machine still kills it mid-work.
		if r.IntN(5) != 0 {
			waitLogLine(t, logPath, offset, "caseintake started", d.done, 20*time.Second)
		}
		delay := time.Duration(r.Int64N(int64(*flagMaxDelay)))
		select {
		case err := <-d.done:
			t.Fatalf("run %d: daemon exited by itself before the kill (%v); see the log", i, err)
		case <-time.After(delay): // the random kill moment, not a synchronisation
		}
		_ = d.stop(t, syscall.SIGKILL, 10*time.Second)
	}
	deliverUpTo(len(msgs))
	killDur := time.Since(loopStart)

	// The last run: let it finish everything, then stop it cleanly.
	d := startDaemon(t, bin, cfg, logFile, kills)
	client := api.NewClient("unix:"+sock, token)
	waitDrained(t, client, mailSys)
	if err := d.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("the last daemon exited with %v after SIGTERM, want a clean exit", err)
	}
	sent := mailSys.Sent()

	// Everything below reads the database the daemon left behind.
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatalf("reopen the data dir after the run: %v", err)
	}
	defer st.Close()
	for _, err := range st.Check() {
		t.Errorf("bbolt tx.Check: %v", err)
	}

	// Every message: exactly one deciding record, with the right outcome.
	wantCases := 0
	for _, m := range msgs {
		ds, err := st.Trace(m.id)
		if err != nil {
			t.Fatalf("trace %s: %v", m.id, err)
		}
		var deciding []string
		for _, d := range ds {
			if d.Deciding() {
				checkRaw(t, st, m, d)
				deciding = append(deciding, d.Outcome)
			}
		}
		if len(deciding) != 1 {
			t.Errorf("Message-ID <%s> (%v from %s) has %d deciding records %v, want exactly 1", m.id, m.kind, m.from, len(deciding), deciding)
			continue
		}
		if deciding[0] != m.kind.outcome() {
			t.Errorf("Message-ID <%s> from %s: outcome %s, want %s (records %d)", m.id, m.from, deciding[0], m.kind.outcome(), len(ds))
		}
		if m.kind == request {
			wantCases++
		}
	}

	// No duplicate case; no message twice on a case.
	cases, err := st.ListCases(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != wantCases {
		t.Errorf("%d cases, want %d (one per new request)", len(cases), wantCases)
	}
	bySubjectOwner := map[string]uint64{}
	for _, c := range cases {
		seen := map[string]bool{}
		for _, m := range c.Messages {
			if m.Direction == casemodel.In && seen[m.MessageID] {
				t.Errorf("case #%d holds Message-ID <%s> twice", c.ID, m.MessageID)
			}
			seen[m.MessageID] = true
		}
		if len(c.Messages) > 0 {
			first := c.Messages[0].MessageID
			if prev, ok := bySubjectOwner[first]; ok {
				t.Errorf("cases #%d and #%d were both opened by <%s>", prev, c.ID, first)
			}
			bySubjectOwner[first] = c.ID
		}
	}

	// The outbox is drained and every accepted message is one of its rows.
	stats, err := st.OutboxStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outbox after the run: %+v", stats)
	rows := map[string]*store.Outgoing{} // Message-ID → row
	acksPerCase := map[uint64]int{}
	for _, c := range cases {
		out, err := st.Outbox(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			if o.State != store.OutboxSent {
				t.Errorf("case #%d notification %s (%s) is %s, want sent (last error %q)", c.ID, o.MessageID, o.Kind, o.State, o.LastError)
			}
			if _, dup := rows[o.MessageID]; dup {
				t.Errorf("two outbox rows share Message-ID %s", o.MessageID)
			}
			rows[o.MessageID] = o
			if o.Kind == "ack" {
				acksPerCase[c.ID]++
			}
		}
	}
	// One acknowledgement per case, unless the decision says a cap
	// suppressed it (a long run passes intake.ack_limit_global's 300 an
	// hour); the caps count transactionally, so kills never let more
	// through.
	totalAcks, suppressed := 0, 0
	for _, c := range cases {
		want := 1
		if len(c.Messages) > 0 {
			ds, err := st.Trace(c.Messages[0].MessageID)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				if d.Deciding() && strings.Contains(d.Signal, "acknowledgement suppressed") {
					want = 0
					suppressed++
				}
			}
		}
		if acksPerCase[c.ID] != want {
			t.Errorf("case #%d (requester %s) has %d acknowledgement rows, want %d", c.ID, c.Requester, acksPerCase[c.ID], want)
		}
		totalAcks += acksPerCase[c.ID]
	}
	if totalAcks > config.DefaultAckLimitGlobal {
		t.Errorf("%d acknowledgements in one hour, over the global cap %d", totalAcks, config.DefaultAckLimitGlobal)
	}
	if suppressed > 0 && totalAcks != config.DefaultAckLimitGlobal {
		t.Errorf("%d acknowledgements suppressed but only %d sent: the global cap %d should have been reached first", suppressed, totalAcks, config.DefaultAckLimitGlobal)
	}

	copies := map[string]int{}
	for _, e := range sent {
		msg, err := mail.ReadMessage(bytes.NewReader(e.Data))
		if err != nil {
			t.Errorf("unreadable sent mail to %v: %v", e.To, err)
			continue
		}
		id := strings.Trim(msg.Header.Get("Message-ID"), "<> ")
		if _, ok := rows[id]; !ok && rows["<"+id+">"] == nil {
			t.Errorf("mail to %v with Message-ID %s is in no outbox row", e.To, id)
		}
		for _, rcpt := range e.To {
			if strings.HasPrefix(rcpt, "robot") || strings.HasPrefix(strings.ToLower(rcpt), "mailer-daemon") {
				t.Errorf("mail %s went to the automated sender %s", id, rcpt)
			}
			copies[id+" "+strings.ToLower(rcpt)]++
		}
	}
	duplicates := 0
	for _, o := range rows {
		id := strings.Trim(o.MessageID, "<>")
		for _, rcpt := range o.Delivered {
			c := copies[id+" "+strings.ToLower(rcpt)]
			if c == 0 {
				t.Errorf("notification %s (%s, case #%d) is marked sent to %s but the server never accepted it", o.MessageID, o.Kind, o.CaseID, rcpt)
			}
			if c > 1 {
				duplicates += c - 1
			}
		}
	}
	if duplicates > kills {
		t.Errorf("%d duplicate deliveries (same Message-ID, same recipient) for %d kills: more than one per kill", duplicates, kills)
	}

	// The mailbox: INBOX empty, every message in Processed exactly once.
	processed, err := mailSys.Messages(support, "Processed")
	if err != nil {
		t.Fatal(err)
	}
	inProcessed := map[string]int{}
	for _, m := range processed {
		pm, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		if err == nil {
			inProcessed[strings.Trim(pm.Header.Get("Message-ID"), "<> ")]++
		}
	}
	for _, m := range msgs {
		if c := inProcessed[m.id]; c != 1 {
			t.Errorf("Message-ID <%s> is %d times in Processed, want once", m.id, c)
		}
	}

	runs, working := countRuns(t, logPath)
	if working < kills/4 {
		t.Errorf("only %d of %d runs decided a message before the kill: the kills do not land while mail is processed", working, runs)
	}
	t.Logf("crash test result: %d messages (%d requests), %d kills in %v, %d daemon runs (%d decided mail), %d cases, %d acks (%d suppressed by the cap), %d mails sent, %d duplicate deliveries (allowed ≤ %d), total %v",
		len(msgs), wantCases, kills, killDur.Round(time.Millisecond), runs, working, len(cases), totalAcks, suppressed, len(sent), duplicates, kills, time.Since(started).Round(time.Millisecond))
}

// countRuns returns how many daemon runs the log holds and how many of
// them decided at least one message.
func countRuns(t *testing.T, path string) (runs, working int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	decided := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "=== run "):
			runs++
			decided = false
		case !decided && strings.Contains(line, `"message decided"`):
			decided = true
			working++
		}
	}
	return runs, working
}

// waitFor polls cond until it holds or limit passes; the failure names the
// last reason cond gave.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", limit, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (k kind) String() string { return [...]string{"request", "reply", "automated"}[k] }

// waitDrained waits until the INBOX is empty and no notification is
// pending, asking the running daemon's API.
func waitDrained(t *testing.T, client *api.Client, mailSys *devmail.Server) {
	t.Helper()
	waitFor(t, 3*time.Minute, "the INBOX to be empty and the outbox drained", func() (bool, string) {
		in, err := mailSys.Messages(support, "INBOX")
		if err != nil {
			return false, err.Error()
		}
		if len(in) > 0 {
			return false, fmt.Sprintf("%d messages still in the INBOX", len(in))
		}
		// One deadline per request: a long run has hundreds of cases.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		list, err := client.ListCases(ctx, store.Filter{})
		cancel()
		if err != nil {
			return false, "API: " + err.Error()
		}
		for _, c := range list {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := client.Case(ctx, c.ID)
			cancel()
			if err != nil {
				return false, "API: " + err.Error()
			}
			for _, nt := range v.Notifications {
				if nt.State == store.OutboxPending {
					return false, fmt.Sprintf("case #%d has a pending notification", c.ID)
				}
			}
		}
		return true, ""
	})
}

func logSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// waitLogLine waits until the log, past offset, holds needle (the daemon
// wrote it), the process ends, or limit passes.
func waitLogLine(t *testing.T, path string, offset int64, needle string, done <-chan error, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	buf := make([]byte, 0, 64<<10)
	for {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
		if _, err := f.Seek(offset, 0); err == nil {
			b, _ := io.ReadAll(f)
			buf = append(buf, b...)
		}
		f.Close()
		if bytes.Contains(buf, []byte(needle)) {
			return
		}
		if len(done) > 0 || time.Now().After(deadline) {
			return // the caller's select reports an early exit
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkRaw: the raw bytes a decision refers to survived the kills whole.
func checkRaw(t *testing.T, st *store.Store, m genMsg, d *store.Decision) {
	t.Helper()
	r, err := st.OpenRaw(d.RawRef)
	if err != nil {
		t.Errorf("Message-ID <%s>: raw %s: %v", m.id, d.RawRef, err)
		return
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, m.raw) {
		t.Errorf("Message-ID <%s>: raw %s holds %d bytes (%v), want the %d delivered", m.id, d.RawRef, len(got), err, len(m.raw))
	}
}
