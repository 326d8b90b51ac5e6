package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

// Big is the one-big-message memory test.
type Big struct {
	Size        int64   `json:"size_bytes"`
	RSSBeforeMB float64 `json:"rss_before_mb"`
	HWMBeforeMB float64 `json:"hwm_before_mb"`
	HWMAfterMB  float64 `json:"hwm_after_mb"`
	RiseMB      float64 `json:"rise_mb"`
	Seconds     float64 `json:"seconds_append_to_acknowledged"`
	Outcome     string  `json:"outcome"`
}

// bigMessage measures how much one message of o.bigMB raises the daemon's
// peak RSS over its resident size just before.
func bigMessage(o options, s *stack, res *Results) error {
	if err := s.moveAll("Backlog", "INBOX", "Processed", "Quarantine"); err != nil {
		return err
	}
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.srv.Close()
	dir := filepath.Join(o.out, "big")
	os.RemoveAll(dir)
	dm, err := writeConfig(s, dir, secTLS, sink.port)
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
	time.Sleep(2 * time.Second)
	g := &Big{}
	rss, err := dm.procStatus("VmRSS")
	if err != nil {
		return err
	}
	hwm, _ := dm.procStatus("VmHWM")
	g.RSSBeforeMB, g.HWMBeforeMB = float64(rss)/1e6, float64(hwm)/1e6
	start := time.Now()
	if g.Size, err = s.appendBig(o.bigMB * 1_000_000); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	done, err := s.waitCount(1, 5*time.Minute, "Processed", "Quarantine")
	if err != nil {
		return err
	}
	g.Seconds = done.Sub(start).Seconds()
	hwm, err = dm.procStatus("VmHWM")
	if err != nil {
		return err
	}
	g.HWMAfterMB = float64(hwm) / 1e6
	g.RiseMB = g.HWMAfterMB - g.RSSBeforeMB
	c, err := s.dial(secPlain, nil)
	if err == nil {
		if n, _ := count(c, "Processed"); n == 1 {
			g.Outcome = "processed"
		} else {
			g.Outcome = "quarantined"
		}
		c.Close()
	}
	log.Printf("big message %.1f MB: RSS %.1f MB before, HWM %.1f → %.1f MB, rise %.1f MB, %s in %.1fs",
		float64(g.Size)/1e6, g.RSSBeforeMB, g.HWMBeforeMB, g.HWMAfterMB, g.RiseMB, g.Outcome, g.Seconds)
	res.Big = g
	return nil
}
