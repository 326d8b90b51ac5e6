package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/caseintake/caseintake/bench/gen"
)

const (
	user     = "support@example.test"
	password = "secret"
)

// stack is the running mail stack (testdata/mailstack/mailstack.sh).
type stack struct {
	dir                        string
	imapPort, imapsPort, smtpP int
	caFile                     string
	tls                        *tls.Config
}

func (s *stack) loadCA() error {
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", s.caFile)
	}
	s.tls = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	return nil
}

// security is how a client reaches Dovecot.
type security string

const (
	secPlain    security = "none"     // plaintext on IMAP_PORT (Dovecot allows LOGIN from 127.0.0.1)
	secStartTLS security = "starttls" // IMAP_PORT, then STARTTLS
	secTLS      security = "tls"      // implicit TLS on IMAPS_PORT
)

func (s *stack) port(sec security) int {
	if sec == secTLS {
		return s.imapsPort
	}
	return s.imapPort
}

// dial logs in as the support user.
func (s *stack) dial(sec security, opts *imapclient.Options) (*imapclient.Client, error) {
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = s.tls
	addr := fmt.Sprintf("127.0.0.1:%d", s.port(sec))
	var c *imapclient.Client
	var err error
	switch sec {
	case secTLS:
		c, err = imapclient.DialTLS(addr, opts)
	case secStartTLS:
		c, err = imapclient.DialStartTLS(addr, opts)
	default:
		c, err = imapclient.DialInsecure(addr, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login (%s): %w", sec, err)
	}
	return c, nil
}

// fill appends n generated messages to INBOX, keeping up to window APPENDs
// in flight, and returns the bytes appended and the kinds written.
func (s *stack) fill(seed uint64, n int) (int64, map[gen.Kind]int, error) {
	c, err := s.dial(secPlain, nil)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	g := gen.New(seed)
	const window = 64
	var inflight []*imapclient.AppendCommand
	var total int64
	kinds := map[gen.Kind]int{}
	flush := func(keep int) error {
		for len(inflight) > keep {
			if _, err := inflight[0].Wait(); err != nil {
				return fmt.Errorf("append: %w", err)
			}
			inflight = inflight[1:]
		}
		return nil
	}
	for range n {
		m := g.Next()
		kinds[m.Kind]++
		cmd := c.Append("INBOX", int64(len(m.Data)), nil)
		if _, err := cmd.Write(m.Data); err != nil {
			return total, nil, err
		}
		if err := cmd.Close(); err != nil {
			return total, nil, err
		}
		total += int64(len(m.Data))
		inflight = append(inflight, cmd)
		if err := flush(window); err != nil {
			return total, nil, err
		}
	}
	return total, kinds, flush(0)
}

// appendBig appends one message of about size bytes, streamed.
func (s *stack) appendBig(size int) (int64, error) {
	c, err := s.dial(secPlain, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n := gen.BigSize(size)
	cmd := c.Append("INBOX", n, nil)
	if _, err := gen.Big(cmd, size); err != nil {
		return 0, err
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	_, err = cmd.Wait()
	return n, err
}

// rawFetch is the physical limit: one client, UID FETCH 1:* BODY.PEEK[] of
// the whole folder, every byte read and thrown away.
func (s *stack) rawFetch(sec security, folder string) (msgs int, bytes int64, d time.Duration, err error) {
	c, err := s.dial(sec, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, 0, 0, err
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	msgs, bytes, err = discardBodies(c, all)
	if err != nil {
		return msgs, bytes, 0, err
	}
	return msgs, bytes, time.Since(start), nil
}

// discardBodies runs UID FETCH BODY.PEEK[] over set, reads every body and
// throws it away.
func discardBodies(c *imapclient.Client, set imap.UIDSet) (msgs int, bytes int64, err error) {
	cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	defer func() {
		if cerr := cmd.Close(); err == nil {
			err = cerr
		}
	}()
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for item := m.Next(); item != nil; item = m.Next() {
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				n, err := io.Copy(io.Discard, b.Literal)
				bytes += n
				if err != nil {
					return msgs, bytes, err
				}
			}
		}
		msgs++
	}
	return msgs, bytes, nil
}

// count returns the number of messages in folder (0 when it is missing).
func count(c *imapclient.Client, folder string) (int, error) {
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && (ie.Code == imap.ResponseCodeNonExistent || ie.Type == imap.StatusResponseTypeNo) {
			return 0, nil
		}
		return 0, err
	}
	if st.NumMessages == nil {
		return 0, nil
	}
	return int(*st.NumMessages), nil
}

// moveAll moves every message of each folder in from to dest (created if
// missing).
func (s *stack) moveAll(dest string, from ...string) error {
	c, err := s.dial(secPlain, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Create(dest, nil).Wait(); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
			return fmt.Errorf("create %s: %w", dest, err)
		}
	}
	for _, f := range from {
		n, err := count(c, f)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		if _, err := c.Select(f, nil).Wait(); err != nil {
			return err
		}
		var all imap.UIDSet
		all.AddRange(1, 0)
		if _, err := c.Move(all, dest).Wait(); err != nil {
			return fmt.Errorf("move %s to %s: %w", f, dest, err)
		}
		if err := c.Unselect().Wait(); err != nil {
			return err
		}
	}
	return nil
}

// waitCount polls folders' total message count every 50 ms until it
// reaches want, and returns when it last saw the count grow; it fails
// after timeout.
func (s *stack) waitCount(want int, timeout time.Duration, folders ...string) (time.Time, error) {
	c, err := s.dial(secPlain, nil)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	var grew time.Time
	last := -1
	for {
		total := 0
		for _, f := range folders {
			n, err := count(c, f)
			if err != nil {
				return time.Time{}, err
			}
			total += n
		}
		now := time.Now()
		if total != last {
			grew, last = now, total
		}
		if total >= want {
			return grew, nil
		}
		if now.After(deadline) {
			return grew, fmt.Errorf("%d of %d messages in %v after %v", total, want, folders, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// commandsOnly drains folder into dest with the daemon's IMAP commands and
// nothing else: on one connection a SELECT, then per lookahead batches
// of batch messages a UID SEARCH and a metadata FETCH (size, date), and
// per batch the bodies, fetched and thrown away; on a second connection
// a SELECT and a UID MOVE per two batches (the last alone), all one after
// the other. It is what the server alone costs a drain: the most a daemon
// could reach with free processing and no overlap.
func (s *stack) commandsOnly(sec security, folder, dest string, batch, lookahead int) (msgs int, d time.Duration, err error) {
	c, err := s.dial(sec, nil)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	mv, err := s.dial(sec, nil)
	if err != nil {
		return 0, 0, err
	}
	defer mv.Close()
	start := time.Now()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		return msgs, 0, err
	}
	above := imap.UID(0)
	var ahead, unmoved []imap.UID
	capped := false // the last search found more than it looked ahead
	batches := 0
	for {
		if len(ahead) == 0 {
			var rest imap.UIDSet
			rest.AddRange(above+1, 0)
			found, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{rest}, NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
			if err != nil {
				return msgs, 0, err
			}
			capped = false
			for _, u := range found.AllUIDs() {
				switch {
				case u <= above:
				case len(ahead) < lookahead*batch:
					ahead = append(ahead, u)
				default:
					capped = true
				}
			}
			if len(ahead) == 0 {
				return msgs, time.Since(start), nil
			}
			if _, err := c.Fetch(imap.UIDSetNum(ahead...), &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}).Collect(); err != nil {
				return msgs, 0, err
			}
		}
		uids := ahead[:min(batch, len(ahead))]
		ahead = ahead[len(uids):]
		set := imap.UIDSetNum(uids...)
		if _, _, err := discardBodies(c, set); err != nil {
			return msgs, 0, err
		}
		unmoved = append(unmoved, uids...)
		above = uids[len(uids)-1]
		if batches++; batches%2 == 1 && (len(ahead) > 0 || capped) {
			continue // moved with the next batch
		}
		if _, err := mv.Select(folder, nil).Wait(); err != nil {
			return msgs, 0, err
		}
		if _, err := mv.Move(imap.UIDSetNum(unmoved...), dest).Wait(); err != nil {
			return msgs, 0, err
		}
		msgs += len(unmoved)
		unmoved = unmoved[:0]
		batches = 0
	}
}
