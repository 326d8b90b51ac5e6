package main

import (
	"fmt"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/lifecycle"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// Scale is the store-scale section for one store size.
type Scale struct {
	Cases                 int     `json:"cases"`
	GenSeconds            float64 `json:"generation_seconds"`
	FileBytes             int64   `json:"bbolt_file_bytes"`
	HealthMS              float64 `json:"startup_to_healthz_ms"`
	ReadyMS               float64 `json:"startup_to_readyz_ms"`
	OpenResults           int     `json:"open_results"`
	InProgressResults     int     `json:"in_progress_results"`
	ListOpenMS            float64 `json:"api_list_open_ms"`
	ListInProgressMS      float64 `json:"api_list_in_progress_ms"`
	StoreListOpenMS       float64 `json:"store_list_open_ms"`
	StoreListInProgressMS float64 `json:"store_list_in_progress_ms"`
	LookupMS              float64 `json:"api_lookup_ms"`
	QuarantineListMS      float64 `json:"api_quarantine_list_ms"`
	QuarantineResults     int     `json:"quarantine_results"`
	RequesterListMS       float64 `json:"api_list_requester_ms"`
	RequesterResults      int     `json:"requester_results"`
	AssigneeListMS        float64 `json:"api_list_assignee_ms"`
	AssigneeResults       int     `json:"assignee_results"`
	CaseViewMS            float64 `json:"api_case_view_ms"`
	MetricsMS             float64 `json:"metrics_scrape_ms"`
	LifecycleMS           float64 `json:"lifecycle_pass_ms"`
	ClosedCases           int     `json:"closed_cases"`
	StoreLookupMS         float64 `json:"store_lookup_ms"`
	CLIListOpenMS         float64 `json:"cli_list_open_ms"`
	CLITraceMS            float64 `json:"cli_trace_ms"`
}

// scaleStatus spreads statuses: 1,000 open cases whatever the size (so
// the open listing has the same result on every store), 1 % in progress,
// 1 % closed (within the reopen window), the rest archived.
func scaleStatus(i, n int) casemodel.Status {
	switch {
	case i%max(1, n/1000) == 0:
		return casemodel.Open
	case i%100 == 1:
		return casemodel.InProgress
	case i%100 == 2:
		return casemodel.Closed
	}
	return casemodel.Archived
}

func scaleMsgID(i int) string { return fmt.Sprintf("scale.%d@client%d.example", i, i%97) }

// scaleRequester is who opened case i: 5,000 customers at 97 domains, so
// that an address has about one case in 485,000.
func scaleRequester(i int) string { return fmt.Sprintf("customer%d@client%d.example", i%5000, i%97) }

// scaleAgent is who works on case i when it is in progress: ten agents
// share those cases.
func scaleAgent(i int) string { return fmt.Sprintf("agent%d@example.test", i/100%10) }

// scaleNotice stands in for a notification's message in the generated
// store: a case view reads the rows, never the messages.
var scaleNotice = []byte("Subject: [Case #0] Export job stuck\r\nAuto-Submitted: auto-generated\r\n\r\n" + strings.Repeat("New case from customer via mailbox support.\r\n", 10))

// scaleQuarantineEvery is how often the generated store has a quarantined
// message beside its cases: 100 in a million.
const scaleQuarantineEvery = 10000

// generateStore writes n cases, each with its opening message, Message-ID
// index, decision record and the two notifications it sent (delivered),
// through the store's public API.
func generateStore(dataDir string, n int) (time.Duration, error) {
	start := time.Now()
	st, err := store.Open(dataDir)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	// Cases arrive every 30 s up to now; every case still open has had
	// its first answer (no due notices to send), closed ones closed a day
	// ago (none to archive): start-up meets a quiet store.
	now := time.Now().UTC()
	base := now.Add(-time.Duration(n) * 30 * time.Second)
	const batch = 20000
	for lo := 0; lo < n; lo += batch {
		err := st.Update(func(tx *store.Tx) error {
			for i := lo; i < min(n, lo+batch); i++ {
				id, err := tx.NewCaseID()
				if err != nil {
					return err
				}
				at := base.Add(time.Duration(i) * 30 * time.Second)
				from := scaleRequester(i)
				subj := fmt.Sprintf("Export job %d stuck since the update", i)
				c := casemodel.New(id, subj, from, "Customer", "support", casemodel.Normal, at)
				msgID := scaleMsgID(i)
				c.Messages = append(c.Messages, casemodel.Message{MessageID: msgID, Direction: casemodel.In, From: from,
					Subject: subj, Date: at, Mailbox: "support", UID: uint32(i + 1), RawRef: "sha256:0000", Text: "The nightly export has not run since the update."})
				answered := at.Add(time.Minute)
				c.FirstResponseAt, c.DueAt = &answered, nil
				if s := scaleStatus(i, n); s != casemodel.Open {
					c.Status = s
					if s == casemodel.InProgress {
						c.Assignee = scaleAgent(i)
					}
					c.AddEvent(casemodel.Event{At: answered, Actor: "agent@example.test", Kind: "status", From: string(casemodel.Open), To: string(s)})
					switch s {
					case casemodel.Closed:
						closed := now.Add(-24 * time.Hour)
						c.ClosedAt = &closed
					case casemodel.Archived:
						c.ClosedAt = &answered
					}
				}
				if err := tx.PutCase(c); err != nil {
					return err
				}
				if err := tx.IndexMessageID(msgID, id); err != nil {
					return err
				}
				// What opening it sent, delivered: the acknowledgement and
				// the team's notice (their messages shortened).
				for _, kind := range []string{"ack", "team_new"} {
					to := []string{from}
					if kind == "team_new" {
						to = []string{"team@example.test"}
					}
					o := &store.Outgoing{CaseID: id, Kind: kind, MessageID: fmt.Sprintf("caseintake.%d.1.%s.scale@example.test", id, kind),
						Subject: "[Case #" + fmt.Sprint(id) + "] " + subj, To: to, Data: scaleNotice, CreatedAt: at}
					if err := tx.Enqueue(o); err != nil {
						return err
					}
					if err := tx.RecordDelivery(o.Seq, store.Delivery{Accepted: to}, answered); err != nil {
						return err
					}
				}
				d := &store.Decision{Mailbox: "support", UIDValidity: 1, UID: uint32(i + 1), MessageID: msgID, MessageKey: msgID,
					From: from, Subject: subj, Outcome: "case:new", Signal: "no case tag or known Message-ID", CaseID: id,
					RawRef: "sha256:0000", Size: 4096, ReceivedAt: at, DecidedAt: at}
				if err := tx.RecordDecision(d); err != nil {
					return err
				}
				if i%scaleQuarantineEvery == 0 {
					// A message that could not be read, beside the cases.
					qid := fmt.Sprintf("broken.%d@client%d.example", i, i%97)
					q := &store.Decision{Mailbox: "support", UIDValidity: 1, UID: uint32(n + i + 1), MessageID: qid, MessageKey: qid,
						From: from, Outcome: store.OutcomeQuarantined + ":mime", Signal: "malformed MIME", RawRef: "sha256:0000",
						Size: 4096, ReceivedAt: at, DecidedAt: at}
					if err := tx.RecordDecision(q); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func medianOf(k int, f func() error) (float64, error) {
	var v []float64
	for range k {
		t := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		v = append(v, float64(time.Since(t).Microseconds())/1000)
	}
	slices.Sort(v)
	return v[len(v)/2], nil
}

func storeScale(o options, s *stack, n int, res *Results) error {
	if err := s.moveAll("Backlog", "INBOX", "Processed", "Quarantine"); err != nil {
		return err
	}
	dir := filepath.Join(o.out, fmt.Sprintf("store-%d", n))
	os.RemoveAll(dir)
	sc := Scale{Cases: n}
	gen, err := generateStore(filepath.Join(dir, "data"), n)
	if err != nil {
		return err
	}
	sc.GenSeconds = gen.Seconds()
	fi, err := os.Stat(filepath.Join(dir, "data", store.DBFile))
	if err != nil {
		return err
	}
	sc.FileBytes = fi.Size()
	log.Printf("store %d cases: generated in %.1fs, %.0f MB", n, sc.GenSeconds, float64(sc.FileBytes)/1e6)

	// In-process figures: the store alone.
	probe := scaleMsgID(n / 2)
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	var open, inprog []*casemodel.Case
	sc.StoreListOpenMS, err = medianOf(5, func() (err error) {
		open, err = st.ListCases(store.Filter{Status: casemodel.Open})
		return err
	})
	if err == nil {
		sc.StoreListInProgressMS, err = medianOf(5, func() (err error) {
			inprog, err = st.ListCases(store.Filter{Status: casemodel.InProgress})
			return err
		})
	}
	if err == nil {
		sc.StoreLookupMS, err = medianOf(5, func() error {
			var found bool
			st.View(func(tx *store.Tx) error {
				_, found = tx.CaseByMessageID(probe)
				return nil
			})
			if !found {
				return fmt.Errorf("Message-ID %s not found", probe)
			}
			return nil
		})
	}
	// The daemon's config, and the lifecycle pass it runs at start-up and
	// every interval (archive, auto-close, due notices), timed in-process.
	dm, err := writeConfig(s, dir, secTLS, s.smtpP)
	if err == nil {
		sc.LifecycleMS, err = lifecyclePass(dm.cfg, st)
	}
	if err == nil {
		var counts map[casemodel.Status]int
		counts, err = st.CountByStatus()
		sc.ClosedCases = counts[casemodel.Closed]
	}
	if err == nil {
		// What the quarantine list below returns, read from the store
		// rather than assumed from the generator.
		var quarantined []*store.Decision
		quarantined, err = st.Quarantined(0)
		sc.QuarantineResults = len(quarantined)
	}
	if err == nil {
		var theirs []*casemodel.Case
		theirs, err = st.ListCases(store.Filter{Requester: scaleRequester(n / 2)})
		sc.RequesterResults = len(theirs)
	}
	if err == nil {
		var mine []*casemodel.Case
		mine, err = st.ListCases(store.Filter{Assignee: scaleAgent(1)})
		sc.AssigneeResults = len(mine)
	}
	st.Close()
	if err != nil {
		return err
	}
	sc.OpenResults, sc.InProgressResults = len(open), len(inprog)

	// The daemon on that store.
	if err := dm.start(o.bin); err != nil {
		return err
	}
	defer dm.stop()
	h, err := dm.waitHTTP("/healthz", 60*time.Second)
	if err != nil {
		return err
	}
	r, err := dm.waitHTTP("/readyz", 60*time.Second)
	if err != nil {
		return err
	}
	sc.HealthMS = float64(h.Sub(dm.started).Microseconds()) / 1000
	sc.ReadyMS = float64(r.Sub(dm.started).Microseconds()) / 1000
	get := func(p string) func() error { return func() error { _, err := dm.get(p); return err } }
	if sc.ListOpenMS, err = medianOf(5, get("/api/v1/cases?status=open")); err != nil {
		return err
	}
	if sc.ListInProgressMS, err = medianOf(5, get("/api/v1/cases?status=in_progress")); err != nil {
		return err
	}
	if sc.LookupMS, err = medianOf(5, func() error {
		if _, err := dm.get("/api/v1/trace?message_id=" + url.QueryEscape(probe)); err != nil {
			return err
		}
		_, err := dm.get(fmt.Sprintf("/api/v1/cases/%d", n/2+1))
		return err
	}); err != nil {
		return err
	}
	if sc.QuarantineListMS, err = medianOf(5, get("/api/v1/quarantine")); err != nil {
		return err
	}
	// An agent looking up a customer's cases.
	if sc.RequesterListMS, err = medianOf(5, get("/api/v1/cases?requester="+url.QueryEscape(scaleRequester(n/2)))); err != nil {
		return err
	}
	// An agent's own list.
	if sc.AssigneeListMS, err = medianOf(5, get("/api/v1/cases?assignee="+url.QueryEscape(scaleAgent(1)))); err != nil {
		return err
	}
	// A Prometheus scrape: cases by status and active cases by priority.
	if sc.MetricsMS, err = medianOf(5, get("/metrics")); err != nil {
		return err
	}
	// An agent opening one case: the case and its notifications.
	if sc.CaseViewMS, err = medianOf(5, get(fmt.Sprintf("/api/v1/cases/%d", n/3+1))); err != nil {
		return err
	}
	cli := func(args ...string) func() error {
		return func() error {
			out, err := exec.Command(o.bin, append(args, "-c", dm.cfg)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %v\n%.500s", args, err, out)
			}
			return nil
		}
	}
	if sc.CLIListOpenMS, err = medianOf(3, cli("cases", "list", "--status", "open", "--json")); err != nil {
		return err
	}
	if sc.CLITraceMS, err = medianOf(3, cli("trace", probe)); err != nil {
		return err
	}
	log.Printf("store %d cases: lifecycle pass %.0f ms; start-up %.0f/%.0f ms, list open %.1f ms (%d), in_progress %.1f ms (%d), lookup %.2f ms, case view %.2f ms",
		n, sc.LifecycleMS, sc.HealthMS, sc.ReadyMS, sc.ListOpenMS, sc.OpenResults, sc.ListInProgressMS, sc.InProgressResults, sc.LookupMS, sc.CaseViewMS)
	res.Stores = append(res.Stores, sc)
	if !o.keep {
		dm.stop()
		os.RemoveAll(dir)
	}
	return nil
}

func lifecyclePass(cfgPath string, st *store.Store) (float64, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return 0, err
	}
	r, err := notify.NewRenderer(cfg.SMTP, cfg.Notify)
	if err != nil {
		return 0, err
	}
	r.SetMessageIDKey(st.MessageIDKey())
	w := lifecycle.New(st, r, lifecycle.Options{ReopenWindow: cfg.Intake.ReopenWindow, AutoCloseAfter: cfg.Lifecycle.AutoCloseAfter,
		AtRiskLead: cfg.Lifecycle.AtRiskLead}, slog.New(slog.DiscardHandler), nil)
	start := time.Now()
	res, err := w.RunOnce()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	log.Printf("lifecycle pass: %+v in %v", res, d)
	return float64(d.Microseconds()) / 1000, nil
}
