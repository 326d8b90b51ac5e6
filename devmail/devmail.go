package devmail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
)

// ErrClosed is returned by methods of a Server that has been closed.
var ErrClosed = errors.New("devmail: server closed")

// DefaultCaps is what the IMAP server advertises when Options.Caps is nil:
// a typical modern server with UIDPLUS and MOVE. imapserver adds IDLE,
// UNSELECT and ENABLE by itself once a client has logged in.
func DefaultCaps() imap.CapSet {
	return imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}}
}

// Options configures Start.
type Options struct {
	// Caps is the IMAP capability set. Nil means DefaultCaps(). Use
	// {IMAP4rev1, UIDPLUS} for a server without MOVE.
	Caps imap.CapSet
	// Users maps address → password. Each becomes an IMAP user (the
	// address is the login name) with an INBOX, and may authenticate to
	// SMTP. Addresses with no IMAP user are still accepted by SMTP and
	// recorded, but delivered nowhere.
	Users map[string]string
	// TLSConfig, when set, enables STARTTLS on both listeners (or implicit
	// TLS, see ImplicitTLS). IMAP LOGIN is then refused until the
	// connection is encrypted; SMTP AUTH is allowed either way.
	TLSConfig *tls.Config
	// ImplicitTLS makes both listeners speak TLS from the first byte
	// (like ports 993 and 465) using TLSConfig, which must be set.
	ImplicitTLS bool
	// Log receives the servers' own diagnostics at debug level and
	// delivery problems at warn level. Nil discards them.
	Log *slog.Logger
}

// Stored is one message as it currently is in a folder.
type Stored struct {
	UID          uint32      // in the folder's current UIDVALIDITY
	Flags        []imap.Flag // e.g. \Seen, \Deleted
	InternalDate time.Time   // when it was delivered (APPEND time)
	Raw          []byte      // exact bytes
}

// Envelope is one SMTP transaction the server accepted.
type Envelope struct {
	From string    // MAIL FROM; "" for the null reverse path <>
	To   []string  // accepted RCPT TO addresses, in order
	Data []byte    // the message exactly as received (dot-stuffing undone)
	At   time.Time // when DATA was accepted
}

// Server is a running in-process mail system. Its fields are set by Start
// and never change.
type Server struct {
	IMAPHost string // always 127.0.0.1
	IMAPPort int
	SMTPHost string // always 127.0.0.1
	SMTPPort int

	opts Options
	log  *slog.Logger
	mem  *imapmemserver.Server

	// internal serves the private sessions of Messages and Remove on
	// in-memory pipes: plaintext, LOGIN allowed, never taken down.
	internal *runningIMAP
	pipes    *pipeListener

	smtpSrv *smtp.Server

	mu       sync.Mutex
	closed   bool
	accounts map[string]*account // key: lower-cased address
	imapSrv  *runningIMAP        // nil while SetIMAPDown(true)
	sent     []Envelope
	sentCh   chan struct{} // closed and replaced whenever sent grows or the server closes
	onSent   func(Envelope)
	rcptErr  map[string]error // key: lower-cased address
	smtpDown bool
	smtpConn []*smtp.Conn      // every SMTP connection accepted, in order
	tokens   map[string]string // OAuth token → lower-cased user (oauth.go)
	noCreate bool              // IMAP CREATE refused (folders.go)
}

type account struct {
	addr     string // exact login name
	password string
	user     *imapmemserver.User
}

// Start runs the IMAP and SMTP servers on 127.0.0.1 with kernel-chosen
// ports. Close stops them.
func Start(opts Options) (*Server, error) {
	if opts.ImplicitTLS && opts.TLSConfig == nil {
		return nil, errors.New("devmail: ImplicitTLS needs TLSConfig")
	}
	if opts.Caps == nil {
		opts.Caps = DefaultCaps()
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		log:      log,
		mem:      imapmemserver.New(),
		accounts: make(map[string]*account),
		sentCh:   make(chan struct{}),
		rcptErr:  make(map[string]error),
	}
	for addr, pw := range opts.Users {
		if err := s.AddUser(addr, pw); err != nil {
			return nil, err
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devmail: imap listen: %w", err)
	}
	s.IMAPHost, s.IMAPPort = splitAddr(ln.Addr())
	s.imapSrv = s.serveIMAP(ln)

	s.pipes = newPipeListener()
	s.internal = runIMAP(&imapserver.Options{
		NewSession:   s.newIMAPSession,
		Caps:         opts.Caps,
		Logger:       logAdapter{log, "imap-internal"},
		InsecureAuth: true,
	}, s.pipes)

	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("devmail: smtp listen: %w", err)
	}
	s.SMTPHost, s.SMTPPort = splitAddr(sln.Addr())
	s.serveSMTP(sln)
	return s, nil
}

func splitAddr(a net.Addr) (string, int) {
	host, port, _ := net.SplitHostPort(a.String())
	p, _ := strconv.Atoi(port)
	return host, p
}

// IMAPAddr is IMAPHost:IMAPPort.
func (s *Server) IMAPAddr() string {
	return net.JoinHostPort(s.IMAPHost, strconv.Itoa(s.IMAPPort))
}

// SMTPAddr is SMTPHost:SMTPPort.
func (s *Server) SMTPAddr() string {
	return net.JoinHostPort(s.SMTPHost, strconv.Itoa(s.SMTPPort))
}

// Close stops both servers, drops every connection and wakes WaitSent
// callers. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.sentCh)
	imapSrv := s.imapSrv
	s.imapSrv = nil
	s.mu.Unlock()

	var errs []error
	if imapSrv != nil {
		errs = append(errs, imapSrv.stop())
	}
	if s.internal != nil {
		errs = append(errs, s.internal.stop())
	}
	if s.smtpSrv != nil {
		errs = append(errs, ignoreClosed(s.smtpSrv.Close()))
	}
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) ||
		strings.Contains(err.Error(), "server closed") {
		return nil
	}
	return err
}

// AddUser creates an IMAP user (login name addr) with an empty INBOX. The
// user may also authenticate to SMTP, and SMTP mail to addr is delivered to
// that INBOX. Adding an existing address is an error.
func (s *Server) AddUser(addr, password string) error {
	key := strings.ToLower(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.accounts[key]; ok {
		return fmt.Errorf("devmail: user %s already exists", addr)
	}
	u := imapmemserver.NewUser(addr, password)
	if err := u.Create("INBOX", nil); err != nil {
		return fmt.Errorf("devmail: create INBOX for %s: %w", addr, err)
	}
	s.mem.AddUser(u)
	s.accounts[key] = &account{addr: addr, password: password, user: u}
	return nil
}

func (s *Server) account(addr string) (*account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	a := s.accounts[strings.ToLower(addr)]
	if a == nil {
		return nil, fmt.Errorf("devmail: no user %s", addr)
	}
	return a, nil
}

// Deliver appends raw to folder of user, as the MTA would, and returns the
// new message's UID. The folder must exist.
func (s *Server) Deliver(user, folder string, raw []byte) (uint32, error) {
	a, err := s.account(user)
	if err != nil {
		return 0, err
	}
	// The memory backend panics on nil options.
	data, err := a.user.Append(folder, bytes.NewReader(raw), &imap.AppendOptions{})
	if err != nil {
		return 0, fmt.Errorf("devmail: deliver to %s/%s: %w", user, folder, err)
	}
	return uint32(data.UID), nil
}

// CreateFolder creates folder for user. A folder that is deleted and
// created again gets a new UIDVALIDITY.
func (s *Server) CreateFolder(user, folder string) error {
	a, err := s.account(user)
	if err != nil {
		return err
	}
	return a.user.Create(folder, nil)
}

// DeleteFolder deletes folder of user with all its messages. Sessions that
// have it selected keep seeing the old folder until they select again.
func (s *Server) DeleteFolder(user, folder string) error {
	a, err := s.account(user)
	if err != nil {
		return err
	}
	return a.user.Delete(folder)
}

// Messages returns the current contents of folder of user in UID order,
// read through a private IMAP session (EXAMINE and UID FETCH with
// BODY.PEEK[], so no flag changes).
func (s *Server) Messages(user, folder string) ([]Stored, error) {
	var out []Stored
	err := s.withSession(user, func(c *imapclient.Client) error {
		sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return fmt.Errorf("examine %s: %w", folder, err)
		}
		if sel.NumMessages == 0 {
			return nil
		}
		var all imap.UIDSet
		all.AddRange(1, 0) // 1:*
		bodySection := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(all, &imap.FetchOptions{
			UID: true, Flags: true, InternalDate: true,
			BodySection: []*imap.FetchItemBodySection{bodySection},
		}).Collect()
		if err != nil {
			return fmt.Errorf("fetch %s: %w", folder, err)
		}
		for _, m := range msgs {
			out = append(out, Stored{
				UID:          uint32(m.UID),
				Flags:        m.Flags,
				InternalDate: m.InternalDate,
				Raw:          m.FindBodySection(bodySection),
			})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, err
}

// Remove expunges the message with uid from folder of user, as another
// mail client would (STORE \Deleted, UID EXPUNGE). Removing a UID that does
// not exist is not an error.
func (s *Server) Remove(user, folder string, uid uint32) error {
	return s.withSession(user, func(c *imapclient.Client) error {
		if _, err := c.Select(folder, nil).Wait(); err != nil {
			return fmt.Errorf("select %s: %w", folder, err)
		}
		set := imap.UIDSetNum(imap.UID(uid))
		del := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		if err := c.Store(set, del, nil).Close(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if err := c.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("uid expunge: %w", err)
		}
		return nil
	})
}

// withSession runs f on a logged-in client of the internal server.
func (s *Server) withSession(user string, f func(*imapclient.Client) error) error {
	a, err := s.account(user)
	if err != nil {
		return err
	}
	conn, err := s.pipes.dial()
	if err != nil {
		return err
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login(a.addr, a.password).Wait(); err != nil {
		return fmt.Errorf("devmail: internal login %s: %w", a.addr, err)
	}
	if err := f(c); err != nil {
		return fmt.Errorf("devmail: %s: %w", a.addr, err)
	}
	return c.Logout().Wait()
}

// Sent returns a copy of every SMTP transaction accepted so far, in order.
func (s *Server) Sent() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sentLocked()
}

func (s *Server) sentLocked() []Envelope {
	out := make([]Envelope, len(s.sent))
	for i, e := range s.sent {
		e.To = append([]string(nil), e.To...)
		e.Data = bytes.Clone(e.Data)
		out[i] = e
	}
	return out
}

// WaitSent blocks until at least n transactions have been accepted and
// returns them all, or returns what there is with ctx's error when ctx ends
// first (ErrClosed when the server closes first).
func (s *Server) WaitSent(ctx context.Context, n int) ([]Envelope, error) {
	for {
		s.mu.Lock()
		if len(s.sent) >= n {
			out := s.sentLocked()
			s.mu.Unlock()
			return out, nil
		}
		if s.closed {
			out := s.sentLocked()
			s.mu.Unlock()
			return out, ErrClosed
		}
		ch := s.sentCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Sent(), ctx.Err()
		}
	}
}

// OnSent sets a callback run after each accepted transaction has been
// delivered and recorded. It runs on the SMTP session's goroutine, so it
// should not block for long. It replaces any earlier callback; nil removes
// it.
func (s *Server) OnSent(f func(Envelope)) {
	s.mu.Lock()
	s.onSent = f
	s.mu.Unlock()
}

// FailRcpt makes RCPT TO:<addr> (compared case-insensitively) fail with
// err, for example &smtp.SMTPError{Code: 452, EnhancedCode:
// smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"} or a 550. An error
// that is not an *smtp.SMTPError is answered as 451. nil clears it.
func (s *Server) FailRcpt(addr string, err error) {
	key := strings.ToLower(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.rcptErr, key)
		return
	}
	s.rcptErr[key] = err
}

// SetSMTPDown simulates an SMTP outage: while down, new connections get a
// 421 greeting and are closed (with implicit TLS: closed at once), and
// MAIL, RCPT and DATA on connections already open are answered 421.
func (s *Server) SetSMTPDown(down bool) {
	s.mu.Lock()
	s.smtpDown = down
	s.mu.Unlock()
}

func (s *Server) isSMTPDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.smtpDown
}

func (s *Server) record(e Envelope) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.sent = append(s.sent, e)
	close(s.sentCh)
	s.sentCh = make(chan struct{})
	cb := s.onSent
	s.mu.Unlock()
	if cb != nil {
		e.To = append([]string(nil), e.To...)
		e.Data = bytes.Clone(e.Data)
		cb(e)
	}
}

// logAdapter turns the Printf-style loggers of imapserver and go-smtp
// into debug records.
type logAdapter struct {
	log       *slog.Logger
	component string
}

func (l logAdapter) Printf(format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", l.component)
}

func (l logAdapter) Println(v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintln(v...)), "component", l.component)
}
