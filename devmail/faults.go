package devmail

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Fault is one kind of misbehaviour a FaultProxy injects into an IMAP
// connection.
type Fault int

const (
	// ByeAtGreeting answers a new connection with "* BYE" instead of the
	// server's greeting and closes it.
	ByeAtGreeting Fault = iota + 1
	// ByeAfterLogin passes the server's OK to LOGIN, then sends "* BYE"
	// and closes the connection.
	ByeAfterLogin
	// ByeDuringIdle passes the server's "+ idling" continuation, then
	// sends "* BYE" and closes the connection.
	ByeDuringIdle
	// DropMidFetch closes the connection (a FIN, no BYE) halfway through
	// the next BODY[] literal.
	DropMidFetch
)

func (f Fault) String() string {
	switch f {
	case ByeAtGreeting:
		return "bye-at-greeting"
	case ByeAfterLogin:
		return "bye-after-login"
	case ByeDuringIdle:
		return "bye-during-idle"
	case DropMidFetch:
		return "drop-mid-fetch"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// FaultProxy is a TCP proxy in front of an IMAP server (plaintext) that
// injects faults on request: BYE at the greeting, after login or during
// IDLE, a connection cut in the middle of a FETCH literal, and a silent
// freeze (no byte passes either way, nothing is closed: a dead peer
// without RST). Point the client at Host:Port.
type FaultProxy struct {
	Host string
	Port int
	// OnCommand, when set (before the first connection), sees every line
	// the client sends before the server does, with the number of its
	// connection (1 for the first accepted): a test can change the
	// mailbox between two commands, e.g. expunge a message after the
	// client's SEARCH and before its FETCH.
	OnCommand func(conn int, line string)

	target string
	ln     net.Listener

	mu       sync.Mutex
	armed    map[Fault]int
	injected map[Fault]int
	accepted int
	frozen   bool
	thaw     chan struct{} // closed when frozen goes false
	changed  chan struct{} // closed and replaced on every injection or accept
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// StartFaultProxy listens on 127.0.0.1 and forwards every connection to
// target (host:port of a plaintext IMAP server, e.g. Server.IMAPAddr()).
func StartFaultProxy(target string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: listen: %w", err)
	}
	host, port := splitAddr(ln.Addr())
	p := &FaultProxy{Host: host, Port: port, target: target, ln: ln,
		armed: map[Fault]int{}, injected: map[Fault]int{}, thaw: make(chan struct{}),
		changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.thaw)
	p.wg.Go(p.serve)
	return p, nil
}

// Arm makes the proxy inject f on its next n occasions.
func (p *FaultProxy) Arm(f Fault, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed[f] += n
}

// Injected says how often f was injected so far.
func (p *FaultProxy) Injected(f Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected[f]
}

// Accepted says how many client connections the proxy accepted.
func (p *FaultProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// WaitInjected waits until f was injected n times or ctx ends.
func (p *FaultProxy) WaitInjected(ctx context.Context, f Fault, n int) error {
	for {
		p.mu.Lock()
		got, ch := p.injected[f], p.changed
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fault proxy: %v injected %d times, waiting for %d: %w", f, got, n, ctx.Err())
		case <-ch:
		}
	}
}

// SetFrozen stops (true) or resumes (false) the flow of bytes on every
// connection, without closing any.
func (p *FaultProxy) SetFrozen(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v == p.frozen {
		return
	}
	p.frozen = v
	if v {
		p.thaw = make(chan struct{})
	} else {
		close(p.thaw)
	}
}

// Close stops the proxy and closes every connection.
func (p *FaultProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// take consumes one armed f; it reports whether f is to be injected now.
func (p *FaultProxy) take(f Fault) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed[f] == 0 {
		return false
	}
	p.armed[f]--
	p.injected[f]++
	close(p.changed)
	p.changed = make(chan struct{})
	return true
}

// gate blocks while the proxy is frozen; it reports false once the
// connection is being torn down.
func (p *FaultProxy) gate(done <-chan struct{}) bool {
	p.mu.Lock()
	thaw := p.thaw
	p.mu.Unlock()
	select {
	case <-thaw:
		return true
	case <-done:
		return false
	}
}

func (p *FaultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *FaultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *FaultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		n := p.accepted
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.handle(c, n) })
	}
}

const byeLine = "* BYE devmail fault proxy: connection closed on purpose\r\n"

// proxyConn is one proxied connection: the commands the client sent that
// the server-side reader needs to recognise answers.
type proxyConn struct {
	n        int // accepted order, from 1
	mu       sync.Mutex
	loginTag string
	idleTag  string
	done     chan struct{}
	once     sync.Once
}

func (pc *proxyConn) stop(conns ...net.Conn) {
	pc.once.Do(func() {
		close(pc.done)
		for _, c := range conns {
			c.Close()
		}
	})
}

var commandRe = regexp.MustCompile(`^(\S+) (?i:(LOGIN|IDLE|AUTHENTICATE))\b`)

func (p *FaultProxy) handle(client net.Conn, n int) {
	defer p.untrack(client)
	if p.take(ByeAtGreeting) {
		_, _ = io.WriteString(client, byeLine)
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	pc := &proxyConn{n: n, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { p.clientToServer(pc, client, server) })
	wg.Go(func() { p.serverToClient(pc, client, server) })
	wg.Wait()
}

// clientToServer passes the client's lines through, noting the tags of
// LOGIN and IDLE.
func (p *FaultProxy) clientToServer(pc *proxyConn, client, server net.Conn) {
	defer pc.stop(client, server)
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			if m := commandRe.FindStringSubmatch(line); m != nil {
				pc.mu.Lock()
				switch strings.ToUpper(m[2]) {
				case "IDLE":
					pc.idleTag = m[1]
				default:
					pc.loginTag = m[1]
				}
				pc.mu.Unlock()
			}
			if !p.gate(pc.done) {
				return
			}
			if p.OnCommand != nil {
				p.OnCommand(pc.n, line)
			}
			if _, werr := io.WriteString(server, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

var literalRe = regexp.MustCompile(`\{(\d+)\}\r\n$`)

// serverToClient passes the server's responses through line by line
// (literals as they come), injecting the armed faults.
func (p *FaultProxy) serverToClient(pc *proxyConn, client, server net.Conn) {
	defer pc.stop(client, server)
	r := bufio.NewReader(server)
	send := func(b []byte) bool {
		if !p.gate(pc.done) {
			return false
		}
		_, err := client.Write(b)
		return err == nil
	}
	bye := func() {
		_, _ = io.WriteString(client, byeLine)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if len(line) > 0 {
				send([]byte(line))
			}
			return
		}
		pc.mu.Lock()
		loginTag, idleTag := pc.loginTag, pc.idleTag
		pc.mu.Unlock()
		if m := literalRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			lit := make([]byte, n)
			if _, err := io.ReadFull(r, lit); err != nil {
				return
			}
			if strings.Contains(strings.ToUpper(line), "BODY[]") && p.take(DropMidFetch) {
				send([]byte(line))
				send(lit[:n/2])
				return // the deferred stop closes both sides
			}
			if !send([]byte(line)) || !send(lit) {
				return
			}
			continue
		}
		if !send([]byte(line)) {
			return
		}
		switch {
		case loginTag != "" && strings.HasPrefix(line, loginTag+" OK") && p.take(ByeAfterLogin):
			bye()
			return
		case idleTag != "" && strings.HasPrefix(line, "+") && p.take(ByeDuringIdle):
			bye()
			return
		}
	}
}
