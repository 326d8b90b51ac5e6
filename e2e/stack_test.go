//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// Domain is the only mail domain of the stack.
	Domain = "example.test"
	// Password is every user's password.
	Password = "secret"
)

// Users are the stack's mailboxes (local parts of Domain).
var Users = []string{"support", "customer", "agent", "team", "oncall", "infra", "stranger"}

// Addr turns a user ("support") into its address ("support@example.test");
// an address is returned unchanged.
func Addr(user string) string {
	if strings.Contains(user, "@") {
		return user
	}
	return user + "@" + Domain
}

// Stack is one running Dovecot + Postfix pair, all of it under Dir.
type Stack struct {
	Dir       string // everything: config, logs, queue, Maildirs (Dir/mail/USER/Maildir)
	IMAPPort  int    // IMAP with STARTTLS on 127.0.0.1
	IMAPSPort int    // IMAP with implicit TLS on 127.0.0.1
	SMTPPort  int    // Postfix smtpd on 127.0.0.1: no auth needed from loopback; STARTTLS and AUTH offered
	CAFile    string // PEM of the CA that signed the servers' certificate (DNS:localhost, IP:127.0.0.1)

	script string

	mu      sync.Mutex
	stopped bool
	reaper  *exec.Cmd
	reaperW *os.File // closing it makes the reaper stop the stack
	reaperD chan error
}

var (
	scriptPath = func() string {
		p, err := filepath.Abs(filepath.Join("..", "testdata", "mailstack", "mailstack.sh"))
		if err != nil {
			panic(err)
		}
		return p
	}()

	installOnce sync.Once
	installErr  error

	registryMu sync.Mutex
	registry   = map[string]*Stack{} // running stacks by Dir

	sharedOnce  sync.Once
	shared      *Stack
	sharedErr   error
	sharedStart time.Duration
)

// TestMain stops every stack still running once the tests are done. A test
// binary that dies without getting here (panic, timeout, kill) is covered by
// each stack's reaper process, which stops the stack when the binary's end of
// a pipe closes.
func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 && shared != nil {
		fmt.Fprintf(os.Stderr, "e2e: logs of the shared mail stack:\n%s", shared.LogTail(60))
	}
	if err := stopAll(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func stopAll() error {
	registryMu.Lock()
	stacks := make([]*Stack, 0, len(registry))
	for _, s := range registry {
		stacks = append(stacks, s)
	}
	registryMu.Unlock()
	var errs []error
	for _, s := range stacks {
		if err := s.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sharedStack returns the stack shared by all tests of the package, starting
// it on first use; TestMain stops it. Tests on it must not depend on being
// alone: use distinct users or subjects, and never stop it (use startStack
// for outages that would disturb other tests).
func sharedStack(t testing.TB) *Stack {
	t.Helper()
	sharedOnce.Do(func() {
		t0 := time.Now()
		shared, sharedErr = newStack()
		sharedStart = time.Since(t0)
		if sharedErr == nil {
			t.Logf("shared mail stack started in %v: %s", sharedStart.Round(time.Millisecond), shared)
		}
	})
	if sharedErr != nil {
		t.Fatalf("shared mail stack: %v", sharedErr)
	}
	return shared
}

// startStack starts a private stack for t in a fresh directory; t's cleanup
// stops it (and, if t failed, logs the tail of its logs).
func startStack(t testing.TB) *Stack {
	t.Helper()
	t0 := time.Now()
	s, err := newStack()
	if err != nil {
		t.Fatalf("start mail stack: %v", err)
	}
	t.Logf("mail stack started in %v: %s", time.Since(t0).Round(time.Millisecond), s)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.LogTail(40))
		}
		if err := s.stop(); err != nil {
			t.Errorf("stop mail stack: %v", err)
		}
	})
	return s
}

func (s *Stack) String() string {
	return fmt.Sprintf("dir=%s imap=%d imaps=%d smtp=%d", s.Dir, s.IMAPPort, s.IMAPSPort, s.SMTPPort)
}

func install() error {
	installOnce.Do(func() {
		out, err := runScript(10*time.Minute, nil, "install")
		if err != nil {
			installErr = fmt.Errorf("mailstack.sh install: %v\n%s", err, out)
		}
	})
	return installErr
}

func newStack() (*Stack, error) {
	if err := install(); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mailstack-")
	if err != nil {
		return nil, err
	}
	// Dovecot's and Postfix's unprivileged users must be able to traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{
		Dir:       dir,
		IMAPPort:  ports[0],
		IMAPSPort: ports[1],
		SMTPPort:  ports[2],
		CAFile:    filepath.Join(dir, "tls", "ca.pem"),
		script:    scriptPath,
	}
	// The reaper runs first, so that even a start that dies half-way is undone.
	if err := s.startReaper(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	registryMu.Lock()
	registry[dir] = s
	registryMu.Unlock()
	env := []string{
		"IMAP_PORT=" + strconv.Itoa(s.IMAPPort),
		"IMAPS_PORT=" + strconv.Itoa(s.IMAPSPort),
		"SMTP_PORT=" + strconv.Itoa(s.SMTPPort),
	}
	if out, err := runScript(2*time.Minute, env, "start", dir); err != nil {
		tail := s.LogTail(30)
		stopErr := s.stop()
		return nil, fmt.Errorf("mailstack.sh start: %v\n%s\n%s%v", err, out, tail, orNil(stopErr))
	}
	return s, nil
}

func orNil(err error) string {
	if err == nil {
		return ""
	}
	return "\nand stopping it: " + err.Error()
}

// startReaper starts a process, in its own process group so that a ^C to
// the test does not reach it, that stops the stack as soon as its stdin (the
// read end of a pipe whose only writer is this test binary) reports EOF: on
// s.stop, or when the binary exits for any reason.
func (s *Stack) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	logf, err := os.Create(filepath.Join(s.Dir, "reaper.log"))
	if err != nil {
		w.Close()
		return err
	}
	defer logf.Close()
	// "stop" on stdin is the orderly end (s.stop cleans up after the reaper);
	// plain EOF means that the test binary died, so the reaper also removes
	// the directory unless MAILSTACK_KEEP is set.
	const reaper = `
if IFS= read -r line && [ "$line" = stop ]; then exec "$0" stop "$1"; fi
"$0" stop "$1" || exit
[ -n "${MAILSTACK_KEEP:-}" ] || rm -rf -- "$1"`
	cmd := exec.Command("bash", "-c", reaper, s.script, s.Dir)
	cmd.Stdin = r
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start reaper: %w", err)
	}
	s.reaper = cmd
	s.reaperW = w
	s.reaperD = make(chan error, 1)
	go func() { s.reaperD <- cmd.Wait() }()
	return nil
}

// stop stops the stack (idempotent) by letting the reaper run
// `mailstack.sh stop DIR`, and removes Dir unless MAILSTACK_KEEP is set.
func (s *Stack) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	registryMu.Lock()
	delete(registry, s.Dir)
	registryMu.Unlock()

	// Should the reaper be gone already, its exit status below tells why.
	_, _ = s.reaperW.WriteString("stop\n")
	s.reaperW.Close()
	var err error
	select {
	case err = <-s.reaperD:
	case <-time.After(2 * time.Minute):
		err = errors.New("reaper did not finish within 2m")
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "reaper.log"))
		return fmt.Errorf("mailstack.sh stop %s: %v\n%s", s.Dir, err, log)
	}
	if os.Getenv("MAILSTACK_KEEP") == "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the stack now instead of at cleanup; t fails if that fails.
func (s *Stack) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// runScript runs mailstack.sh with args and extra environment, and returns
// its combined output.
func runScript(timeout time.Duration, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Should a daemon ever hold on to our pipe, do not wait for it forever.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// Script runs a mailstack.sh subcommand against this stack's Dir.
func (s *Stack) Script(t testing.TB, subcommand string) string {
	t.Helper()
	t0 := time.Now()
	out, err := runScript(2*time.Minute, nil, subcommand, s.Dir)
	if err != nil {
		t.Fatalf("mailstack.sh %s: %v\n%s", subcommand, err, out)
	}
	t.Logf("mailstack.sh %s took %v", subcommand, time.Since(t0).Round(time.Millisecond))
	return out
}

// StopPostfix stops Postfix only: SMTP is refused until StartPostfix.
func (s *Stack) StopPostfix(t testing.TB) { t.Helper(); s.Script(t, "stop-postfix") }

// StartPostfix starts Postfix again; mail it had queued is delivered within
// a few seconds (queue_run_delay and backoff are 1-2s).
func (s *Stack) StartPostfix(t testing.TB) { t.Helper(); s.Script(t, "start-postfix") }

// FlushPostfix makes Postfix retry every queued message now.
func (s *Stack) FlushPostfix(t testing.TB) { t.Helper(); s.Script(t, "flush-postfix") }

// StopDovecot stops Dovecot only: IMAP is refused and Postfix keeps mail for
// it in its queue (deferred) until StartDovecot.
func (s *Stack) StopDovecot(t testing.TB) { t.Helper(); s.Script(t, "stop-dovecot") }

// StartDovecot starts Dovecot again.
func (s *Stack) StartDovecot(t testing.TB) { t.Helper(); s.Script(t, "start-dovecot") }

// RestartDovecot stops and starts Dovecot: every IMAP connection is cut.
func (s *Stack) RestartDovecot(t testing.TB) { t.Helper(); s.Script(t, "restart-dovecot") }

// IMAPAddr, IMAPSAddr and SMTPAddr are host:port strings on 127.0.0.1.
func (s *Stack) IMAPAddr() string  { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.IMAPPort)) }
func (s *Stack) IMAPSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.IMAPSPort)) }
func (s *Stack) SMTPAddr() string  { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.SMTPPort)) }

// PidFiles are the master pid files of Dovecot and Postfix.
func (s *Stack) PidFiles() []string {
	return []string{
		filepath.Join(s.Dir, "dovecot", "run", "master.pid"),
		filepath.Join(s.Dir, "postfix-queue", "pid", "master.pid"),
	}
}

// PIDs returns the running processes of the stack: both masters (from their
// pid files) and everything below them.
func (s *Stack) PIDs() []int {
	var roots []int
	for _, f := range s.PidFiles() {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && processAlive(pid) {
			roots = append(roots, pid)
		}
	}
	return withDescendants(roots)
}

// withDescendants returns roots plus every live process below them.
func withDescendants(roots []int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state, ok := procStat(pid); ok && state != "Z" {
			children[ppid] = append(children[ppid], pid)
		}
	}
	all := append([]int(nil), roots...)
	for i := 0; i < len(all); i++ {
		all = append(all, children[all[i]]...)
	}
	sort.Ints(all)
	return all
}

// procStat reads the parent pid and state letter of pid from /proc.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// WaitForDeferral waits until Postfix has given up a delivery attempt for
// now: its log says status=deferred, or a message sits in the deferred
// queue. Stopping Postfix before that (while the attempt is under way)
// could leave the mail unretried for minutes.
func (s *Stack) WaitForDeferral(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if files, _ := filepath.Glob(filepath.Join(s.Dir, "postfix-queue", "deferred", "*", "*")); len(files) > 0 {
			return
		}
		if log, err := os.ReadFile(filepath.Join(s.Dir, "log", "postfix.log")); err == nil && strings.Contains(string(log), "status=deferred") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix deferred no message within %v:\n%s", within, s.LogTail(20))
		}
		<-tick.C
	}
}

// LogTail returns the last n lines of each of the stack's logs.
func (s *Stack) LogTail(n int) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(s.Dir, "log", "*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// runTool runs an external program with stdin, failing t with its output on
// error, and returns its combined output.
func runTool(t testing.TB, stdin []byte, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
