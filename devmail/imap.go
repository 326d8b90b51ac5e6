package devmail

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
)

// idlePoll is how often an idling session looks for mailbox changes.
const idlePoll = 20 * time.Millisecond

func (s *Server) newIMAPSession(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	// The memory backend's session implements MOVE and NAMESPACE as well.
	return saslSession{idleSession{s.mem.NewSession().(imapserver.SessionIMAP4rev2)}, s}, nil, nil
}

// idleSession replaces imapmemserver's IDLE, which (beta.8) reports only
// changes made after IDLE began: an EXISTS queued between the client's
// last command and its IDLE would wait for the next command, and a client
// would miss new mail until its safety poll. This IDLE sends whatever is
// pending at once and then looks again every idlePoll.
type idleSession struct {
	imapserver.SessionIMAP4rev2
}

func (s idleSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	t := time.NewTicker(idlePoll)
	defer t.Stop()
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
}

// runningIMAP is an imapserver serving one listener.
type runningIMAP struct {
	srv  *imapserver.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

func runIMAP(o *imapserver.Options, ln net.Listener) *runningIMAP {
	r := &runningIMAP{srv: imapserver.New(o), ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.srv.Serve(ln)
	}()
	return r
}

// stop closes the listener and waits for Serve to return before closing the
// server and its connections. (In go-imap beta.8, Server.Close right after
// Serve started races with Serve's WaitGroup.Add.)
func (r *runningIMAP) stop() error {
	r.ln.Close()
	<-r.done
	return ignoreClosed(r.srv.Close())
}

// serveIMAP starts a public IMAP server on ln (raw TCP).
func (s *Server) serveIMAP(ln net.Listener) *runningIMAP {
	o := &imapserver.Options{
		NewSession:   s.newIMAPSession,
		Caps:         s.opts.Caps,
		Logger:       logAdapter{s.log, "imap"},
		InsecureAuth: s.opts.TLSConfig == nil,
	}
	if s.opts.ImplicitTLS {
		ln = tls.NewListener(ln, s.opts.TLSConfig)
	} else {
		o.TLSConfig = s.opts.TLSConfig
	}
	return runIMAP(o, ln)
}

// SetIMAPDown simulates an IMAP outage. true closes the listener and every
// open IMAP connection, so connecting is refused; false listens again on the
// same address. Mailbox contents are kept. Deliver and Messages keep
// working throughout.
func (s *Server) SetIMAPDown(down bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if down {
		if s.imapSrv != nil {
			srv := s.imapSrv
			s.imapSrv = nil
			return srv.stop()
		}
		return nil
	}
	if s.imapSrv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.IMAPAddr())
	if err != nil {
		return fmt.Errorf("devmail: imap listen again on %s: %w", s.IMAPAddr(), err)
	}
	s.imapSrv = s.serveIMAP(ln)
	return nil
}

// RestartIMAP drops every IMAP connection and listens again on the same
// address, as a server restart would. Mailbox contents are kept.
func (s *Server) RestartIMAP() error {
	if err := s.SetIMAPDown(true); err != nil {
		return err
	}
	return s.SetIMAPDown(false)
}

// pipeListener hands out in-memory connections to the internal server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "devmail-internal" }
