// Command caseintake-bench measures caseintake against the physical limits
// of the mail server and the disk, side by side in one run (issue #6):
//
//  1. backlog: a generated backlog in the real Dovecot; one raw
//     UID FETCH 1:* BODY.PEEK[] against caseintake draining the same
//     mailbox, over plaintext IMAP and implicit TLS, repeated;
//  2. latency: mail submitted through Postfix one at a time, with IDLE,
//     to case committed and to acknowledgement accepted, beside a plain
//     IDLE client's floor;
//  3. memory: the daemon's peak RSS over the backlog and for one 50 MB
//     message;
//  4. store scale: start-up, status listing and Message-ID lookup on a
//     store of 1,000,000 cases (and of 10,000 for comparison).
//
// It prints a table and writes the same figures as JSON to OUT/bench.json.
// It needs root (the mail stack does) and the caseintake binary (-bin).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type options struct {
	bin, out, script string
	n, runs, latN    int
	seed             uint64
	cases            []int
	bigMB            int
	only             string
	keep             bool
	drainLimit       time.Duration
	profileSec       security
}

func main() {
	o := options{profileSec: secTLS}
	var cases string
	flag.StringVar(&o.bin, "bin", "bin/caseintake", "the caseintake binary under test")
	flag.StringVar(&o.out, "out", "bench/out", "output directory (stack, data dirs, logs, bench.json, profiles)")
	flag.StringVar(&o.script, "mailstack", "testdata/mailstack/mailstack.sh", "the mail-stack script")
	flag.IntVar(&o.n, "n", 10000, "messages in the backlog")
	flag.IntVar(&o.runs, "runs", 3, "repetitions of each backlog measurement")
	flag.IntVar(&o.latN, "latency-n", 50, "messages for the latency test")
	flag.Uint64Var(&o.seed, "seed", 1, "generator seed")
	flag.StringVar(&cases, "cases", "10000,1000000", "store sizes for the store-scale test")
	flag.IntVar(&o.bigMB, "big-mb", 50, "size of the big message in MB")
	flag.StringVar(&o.only, "only", "", "comma-separated subset: backlog,latency,memory,store,profile (default: all but profile)")
	flag.DurationVar(&o.drainLimit, "drain-limit", 45*time.Second, "stop a drain after this long and report the rate so far (keeps make bench under 15 minutes while the drain is slow)")
	flag.Func("profile-security", "transport of the profile step: none (plaintext) or tls (default)", func(v string) error {
		switch security(v) {
		case secPlain, secTLS:
			o.profileSec = security(v)
			return nil
		}
		return fmt.Errorf("want none or tls, not %q", v)
	})
	flag.BoolVar(&o.keep, "keep", false, "keep data dirs (raw stores) after each step")
	flag.Parse()
	for _, s := range strings.Split(cases, ",") {
		if s = strings.TrimSpace(s); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil {
				log.Fatalf("-cases: %v", err)
			}
			o.cases = append(o.cases, v)
		}
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("bench: ")
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func (o options) want(step string) bool {
	if o.only == "" {
		return step != "profile"
	}
	for _, s := range strings.Split(o.only, ",") {
		if strings.TrimSpace(s) == step {
			return true
		}
	}
	return false
}

func run(o options) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the mail stack needs root (Postfix's master runs only as root)")
	}
	var err2 error
	if o.out, err2 = filepath.Abs(o.out); err2 != nil {
		return err2
	}
	if o.bin, err2 = filepath.Abs(o.bin); err2 != nil {
		return err2
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("binary under test: %w (make build)", err)
	}
	// 0755: Postfix and Dovecot, running as other users, must traverse it.
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	res := &Results{Started: time.Now().UTC(), Machine: machine(), Config: Params{N: o.n, Runs: o.runs, Seed: o.seed,
		LatencyN: o.latN, BigMB: o.bigMB, Cases: o.cases, DrainLimit: o.drainLimit}}
	res.LoadBefore = loadavg()

	s, stop, err := startStack(o)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	if o.want("backlog") || o.want("profile") {
		if err := backlog(o, s, res); err != nil {
			return fmt.Errorf("backlog: %w", err)
		}
	}
	if o.want("latency") {
		if err := latency(o, s, res); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if o.want("memory") {
		if err := bigMessage(o, s, res); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	if o.want("store") {
		for _, n := range o.cases {
			if err := storeScale(o, s, n, res); err != nil {
				return fmt.Errorf("store scale %d: %w", n, err)
			}
		}
	}
	res.LoadAfter = loadavg()
	res.Finished = time.Now().UTC()
	buf, _ := json.MarshalIndent(res, "", "  ")
	path := filepath.Join(o.out, "bench.json")
	if err := os.WriteFile(path, append(buf, '\n'), 0o644); err != nil {
		return err
	}
	printTable(os.Stdout, res)
	fmt.Printf("\nfigures: %s\n", path)
	return nil
}

// startStack starts Dovecot and Postfix under OUT/stack on free ports.
func startStack(o options) (*stack, func() error, error) {
	dir := filepath.Join(o.out, "stack")
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	s := &stack{dir: dir, caFile: filepath.Join(dir, "tls", "ca.pem")}
	for _, p := range []*int{&s.imapPort, &s.imapsPort, &s.smtpP} {
		v, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		*p = v
	}
	cmd := exec.Command(o.script, "start", dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("IMAP_PORT=%d", s.imapPort), fmt.Sprintf("IMAPS_PORT=%d", s.imapsPort),
		fmt.Sprintf("SMTP_PORT=%d", s.smtpP))
	out, err := cmd.CombinedOutput()
	stop := func() error {
		out, err := exec.Command(o.script, "stop", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mailstack stop: %v\n%s", err, out)
		}
		return nil
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("mailstack start: %v\n%s", err, out)
	}
	log.Printf("mail stack up: imap %d, imaps %d, smtp %d (%s)", s.imapPort, s.imapsPort, s.smtpP, dir)
	if err := s.loadCA(); err != nil {
		stop()
		return nil, nil, err
	}
	return s, stop, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	var model string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	out, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s cores, %s", strings.TrimSpace(string(out)), model)
}
