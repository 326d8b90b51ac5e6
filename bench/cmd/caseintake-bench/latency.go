package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"net/smtp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Dist is a latency distribution in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func dist(ms []float64) Dist {
	if len(ms) == 0 {
		return Dist{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)] }
	return Dist{N: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}

func (d Dist) String() string {
	return fmt.Sprintf("p50 %.0f ms, p99 %.0f ms (max %.0f)", d.P50, d.P99, d.Max)
}

// Latency is the latency section.
type Latency struct {
	Sent      int     `json:"sent"`
	Security  string  `json:"imap_security"`
	Committed Dist    `json:"smtp250_to_committed"`
	Acked     Dist    `json:"smtp250_to_ack_accepted"`
	IdleFloor Dist    `json:"smtp250_to_idle_exists"`
	Raw       []LatMs `json:"samples"`
}

// LatMs is one message's figures (-1: not seen).
type LatMs struct {
	MessageID string  `json:"message_id"`
	Idle      float64 `json:"idle_ms"`
	Committed float64 `json:"committed_ms"`
	Acked     float64 `json:"acked_ms"`
}

// senders rotate so that no address passes the 10 acknowledgements an hour.
var senders = []string{"customer", "stranger", "agent", "infra", "oncall", "team"}

func latency(o options, s *stack, res *Results) error {
	if err := s.moveAll("Backlog", "INBOX", "Processed", "Quarantine"); err != nil {
		return err
	}
	dir := filepath.Join(o.out, "latency")
	os.RemoveAll(dir)
	dm, err := writeConfig(s, dir, secTLS, s.smtpP) // notifications through Postfix
	if err != nil {
		return err
	}
	if err := dm.start(o.bin); err != nil {
		return err
	}
	defer dm.stop()
	if _, err := dm.waitHTTP("/readyz", 30*time.Second); err != nil {
		return err
	}

	// The floor: a plain IDLE client on the same folder.
	var mu sync.Mutex
	var exists []time.Time
	var prev uint32
	ic, err := s.dial(secTLS, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages == nil {
				return
			}
			mu.Lock()
			if *d.NumMessages > prev {
				exists = append(exists, time.Now())
			}
			prev = *d.NumMessages
			mu.Unlock()
		},
		Expunge: func(uint32) {
			mu.Lock()
			if prev > 0 {
				prev--
			}
			mu.Unlock()
		},
	}})
	if err != nil {
		return err
	}
	defer ic.Close()
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		return err
	}
	idle, err := ic.Idle()
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)

	addr := fmt.Sprintf("127.0.0.1:%d", s.smtpP)
	sent := make([]time.Time, o.latN)
	ids := make([]string, o.latN)
	for i := range o.latN {
		from := senders[i%len(senders)] + "@example.test"
		ids[i] = fmt.Sprintf("lat.%d.%d@client.example", i, time.Now().UnixNano())
		body := fmt.Sprintf("From: Latency Test <%s>\r\nTo: support@example.test\r\nSubject: Latency probe %d: printer on fire\r\n"+
			"Date: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease help, probe %d.\r\n",
			from, i, time.Now().Format(time.RFC1123Z), ids[i], i)
		next := time.Now().Add(time.Second)
		if sent[i], err = submit(addr, from, body); err != nil {
			return fmt.Errorf("submit %d: %w", i, err)
		}
		time.Sleep(time.Until(next))
	}
	// Wait until every message is committed and acknowledged (or 15 s).
	var committed, acked map[string]time.Time
	deadline := time.Now().Add(15 * time.Second)
	for {
		committed, acked, err = readLog(dm.logPath)
		if err != nil {
			return err
		}
		n := 0
		for _, id := range ids {
			if _, ok := acked[id]; ok {
				n++
			}
		}
		if n == len(ids) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	idle.Close()

	l := &Latency{Sent: o.latN, Security: string(secTLS)}
	var cms, ams, ims []float64
	mu.Lock()
	ex := slices.Clone(exists)
	mu.Unlock()
	for i, id := range ids {
		ms := func(t time.Time, ok bool) float64 {
			if !ok {
				return -1
			}
			return float64(t.Sub(sent[i]).Microseconds()) / 1000
		}
		lm := LatMs{MessageID: id, Idle: -1}
		for _, t := range ex {
			if !t.Before(sent[i]) && (i+1 == len(sent) || t.Before(sent[i+1])) {
				lm.Idle = ms(t, true)
				break
			}
		}
		c, ok := committed[id]
		lm.Committed = ms(c, ok)
		a, ok := acked[id]
		lm.Acked = ms(a, ok)
		l.Raw = append(l.Raw, lm)
		if lm.Committed >= 0 {
			cms = append(cms, lm.Committed)
		}
		if lm.Acked >= 0 {
			ams = append(ams, lm.Acked)
		}
		if lm.Idle >= 0 {
			ims = append(ims, lm.Idle)
		}
	}
	l.Committed, l.Acked, l.IdleFloor = dist(cms), dist(ams), dist(ims)
	log.Printf("latency: committed %v; acked %v; IDLE floor %v", l.Committed, l.Acked, l.IdleFloor)
	res.Latency = l
	return nil
}

// submit sends one message through Postfix and returns when the 250 after
// DATA arrived.
func submit(addr, from, body string) (time.Time, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	if err := c.Hello("bench.example.test"); err != nil {
		return time.Time{}, err
	}
	if err := c.Mail(from); err != nil {
		return time.Time{}, err
	}
	if err := c.Rcpt("support@example.test"); err != nil {
		return time.Time{}, err
	}
	w, err := c.Data()
	if err != nil {
		return time.Time{}, err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return time.Time{}, err
	}
	if err := w.Close(); err != nil { // reads the 250
		return time.Time{}, err
	}
	t := time.Now()
	c.Quit()
	return t, nil
}

// readLog finds, per Message-ID, when the daemon logged the committed
// decision and when its acknowledgement was accepted by SMTP.
func readLog(path string) (committed, acked map[string]time.Time, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	committed, acked = map[string]time.Time{}, map[string]time.Time{}
	caseMsg := map[float64]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time      time.Time `json:"time"`
			Msg       string    `json:"msg"`
			MessageID string    `json:"message_id"`
			Case      float64   `json:"case"`
			Kind      string    `json:"kind"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Msg {
		case "message decided":
			id := strings.Trim(l.MessageID, "<>")
			committed[id] = l.Time
			caseMsg[l.Case] = id
		case "notification sent":
			if l.Kind == "ack" {
				if id, ok := caseMsg[l.Case]; ok {
					acked[id] = l.Time
				}
			}
		}
	}
	return committed, acked, sc.Err()
}
