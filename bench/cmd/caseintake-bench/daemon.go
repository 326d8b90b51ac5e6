package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// daemon is one `caseintake serve` process.
type daemon struct {
	cmd     *exec.Cmd
	dir     string
	cfg     string
	api     string
	token   string
	logPath string
	started time.Time
	done    chan error
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// writeConfig writes a config for the stack under dir; smtpPort is where
// notifications go (Postfix, or the bench's sink).
func writeConfig(s *stack, dir string, sec security, smtpPort int) (*daemon, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	token := "bench-token-0123456789"
	for name, content := range map[string]string{"imap.secret": password, "api.token": token} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
mailboxes:
  - name: support
    address: support@example.test
    imap:
      host: 127.0.0.1
      port: %[2]d
      security: %[3]s
      username: support@example.test
      password_file: %[1]s/imap.secret
      ca_file: %[4]s
    folder: INBOX
    processed_folder: Processed
    quarantine_folder: Quarantine
    idle: true
    poll_interval: 30s
smtp:
  host: 127.0.0.1
  port: %[5]d
  security: none
  from: "Example Support <support@example.test>"
notify:
  team: [team@example.test]
  urgent: [oncall@example.test, infra@example.test]
api:
  listen: 127.0.0.1:%[6]d
  token_file: %[1]s/api.token
log:
  level: info
  format: json
`, dir, s.port(sec), sec, s.caFile, smtpPort, apiPort)
	d := &daemon{dir: dir, cfg: filepath.Join(dir, "caseintake.yaml"), api: fmt.Sprintf("127.0.0.1:%d", apiPort),
		token: token, logPath: filepath.Join(dir, "caseintake.log")}
	return d, os.WriteFile(d.cfg, []byte(cfg), 0o600)
}

// start runs `caseintake serve`; its log goes to d.logPath.
func (d *daemon) start(bin string) error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.cmd = exec.Command(bin, "serve", "-c", d.cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait(); logf.Close() }()
	return nil
}

// waitHTTP polls path on the API until it answers 200 and returns when.
func (d *daemon) waitHTTP(path string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + d.api + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Now(), nil
			}
		}
		select {
		case err := <-d.done:
			d.done <- err
			return time.Time{}, fmt.Errorf("daemon exited (%v); see %s", err, d.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s not ready after %v (last: %v); see %s", path, timeout, err, d.logPath)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get calls the API with the token and returns the body's size.
func (d *daemon) get(path string) (int64, error) {
	req, err := http.NewRequest("GET", "http://"+d.api+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return n, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return n, err
}

// procStatus reads a kB field (VmRSS, VmHWM) of the daemon's /proc status.
func (d *daemon) procStatus(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (d *daemon) stop() error {
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		return nil
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		return fmt.Errorf("daemon did not stop within 30 s of SIGTERM; killed")
	}
}

// sink is an SMTP server that accepts and discards everything, so that a
// backlog drain measures caseintake and Dovecot, not Postfix delivering
// tens of thousands of notifications on the same two cores.
type sink struct {
	srv  *smtp.Server
	port int
}

type sinkSession struct{}

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (sinkSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{}, nil }))
	srv.Domain = "sink.example.test"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 64 << 20
	srv.ErrorLog = nopLogger{}
	go srv.Serve(ln)
	return &sink{srv: srv, port: ln.Addr().(*net.TCPAddr).Port}, nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// waitMoved follows the daemon's log until want messages were moved out of
// the intake folder or limit has passed since it started (see
// followMoves).
func (d *daemon) waitMoved(want int, limit time.Duration) (drainEnd, int, error) {
	return followMoves(d.logPath, d.started.Add(limit), want)
}

// drainEnd is when a drain's messages were committed and moved, as the
// daemon logged it.
type drainEnd struct {
	// Committed is when the last message was committed (the intake's
	// "message decided", or "message quarantined" without a folder): the
	// end of the drain in issue #6's terms.
	Committed time.Time
	// Moved is when the last message was moved out of the intake folder.
	Moved time.Time
}

// followMoves follows a caseintake log at path until want messages were
// moved out of the intake folder (the worker's "message processed" and
// "message quarantined" lines, which name the folder they went to) or the
// deadline passes. It returns when the last of them was committed and
// moved, and how many were moved. Reading the log costs the daemon and
// Dovecot nothing; polling the folders' STATUS every 50 ms cost Dovecot up
// to a sixth of a core by the end of a drain (each STATUS after a MOVE
// reads the growing folder again).
func followMoves(path string, deadline time.Time, want int) (end drainEnd, n int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return end, 0, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var partial []byte // a line being written
	for n < want {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			partial = append(partial, line...)
			if time.Now().After(deadline) {
				return end, n, nil
			}
			time.Sleep(50 * time.Millisecond) // the log has no more yet
			continue
		}
		if err != nil {
			return end, n, err
		}
		if len(partial) > 0 {
			line, partial = append(partial, line...), nil
		}
		moved := bytes.Contains(line, []byte(`"moved_to":"`))
		committed := !moved && (bytes.Contains(line, []byte(`"msg":"message decided"`)) ||
			bytes.Contains(line, []byte(`"msg":"message quarantined"`)))
		if !moved && !committed {
			continue
		}
		var e struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return end, n, fmt.Errorf("%s: %w: %s", path, err, line)
		}
		if committed {
			if e.Time.After(end.Committed) {
				end.Committed = e.Time
			}
			continue
		}
		n++
		if e.Time.After(end.Moved) {
			end.Moved = e.Time
		}
	}
	return end, n, nil
}
