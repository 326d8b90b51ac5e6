package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procTimes is what /proc/PID/stat says about a process's CPU time.
type procTimes struct {
	ppid     int
	self     time.Duration // utime + stime
	children time.Duration // cutime + cstime: the children it has reaped
}

// readProcTimes reads pid's /proc stat.
func readProcTimes(pid int) (procTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, err
	}
	// The fields after the command name, which may hold spaces: state is
	// f[0], ppid f[1], utime f[11], stime f[12], cutime f[13], cstime f[14].
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("short /proc stat: %q", s)
	}
	var v [5]int64
	for i, k := range []int{1, 11, 12, 13, 14} {
		if v[i], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return procTimes{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
		}
	}
	return procTimes{ppid: int(v[0]), self: ticks(v[1] + v[2]), children: ticks(v[3] + v[4])}, nil
}

// cpuTime is the CPU time (user and system) the daemon has used so far.
func (d *daemon) cpuTime() (time.Duration, error) {
	t, err := readProcTimes(d.cmd.Process.Pid)
	return t.self, err
}

// treeCPU is the CPU time a process tree has used so far: the root, every
// live descendant, and the children they reaped. Dovecot runs one imap
// process per connection; one that exits between two readings is counted
// in its parent's reaped time by the second, so the difference of two
// readings is what the tree used in between. A child reaped while the
// tree is being read would count in neither or in both places: the
// reading is taken again until the root's reaped time holds still.
func treeCPU(root int) (time.Duration, error) {
	for range 10 {
		before, err := readProcTimes(root)
		if err != nil {
			return 0, err
		}
		live, err := descendantsCPU(root)
		if err != nil {
			return 0, err
		}
		after, err := readProcTimes(root)
		if err != nil {
			return 0, err
		}
		if after.children == before.children {
			return after.self + after.children + live, nil
		}
	}
	return 0, fmt.Errorf("process %d kept reaping children while its tree was read", root)
}

// descendantsCPU is the CPU time of root's live descendants and of the
// children they reaped.
func descendantsCPU(root int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	kids := map[int][]int{}
	times := map[int]procTimes{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		t, err := readProcTimes(pid)
		if err != nil {
			continue // gone since the listing
		}
		times[pid] = t
		kids[t.ppid] = append(kids[t.ppid], pid)
	}
	var total time.Duration
	for queue := kids[root]; len(queue) > 0; queue = queue[1:] {
		t := times[queue[0]]
		total += t.self + t.children
		queue = append(queue, kids[queue[0]]...)
	}
	return total, nil
}

// serverCPU is the CPU time Dovecot has used so far.
func (s *stack) serverCPU() (time.Duration, error) {
	file, err := s.env("DOVECOT_PID_FILE")
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a pid", file, b)
	}
	return treeCPU(pid)
}

// env reads key from the stack.env the mail-stack script wrote.
func (s *stack) env(key string) (string, error) {
	path := filepath.Join(s.dir, "stack.env")
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: no %s", path, key)
}

// machineBusy is the CPU time all processes have used since boot: the
// first line of /proc/stat without idle and iowait.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: %q", line)
	}
	var busy int64
	for i, v := range f[1:8] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q", line)
		}
		busy += n
	}
	return ticks(busy), nil
}

// ticks converts clock ticks (USER_HZ, 100 on Linux) to a duration.
func ticks(n int64) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

// cpuMeter reads the machine's, the server's and optionally the daemon's
// CPU time at the start and the end of a timed step.
type cpuMeter struct {
	s                     *stack
	machine, server, self time.Duration
}

// startCPU takes the first reading.
func startCPU(s *stack) (*cpuMeter, error) {
	m := &cpuMeter{s: s}
	var err error
	m.machine, m.server, m.self, err = m.read()
	return m, err
}

func (m *cpuMeter) read() (machine, server, self time.Duration, err error) {
	machine, err1 := machineBusy()
	server, err2 := m.s.serverCPU()
	me, err3 := readProcTimes(os.Getpid())
	return machine, server, me.self, errors.Join(err1, err2, err3)
}

// CPUShare is CPU time per message of a timed step, by whom.
type CPUShare struct {
	MachineMs float64 `json:"machine_cpu_ms_per_message"`
	ServerMs  float64 `json:"dovecot_cpu_ms_per_message"`
	// BenchMs is this program: the IMAP client of the raw fetch and the
	// commands-only pass, the SMTP sink and the progress polls of a drain.
	BenchMs float64 `json:"bench_cpu_ms_per_message"`
}

// stop takes the second reading and divides the differences by msgs.
func (m *cpuMeter) stop(msgs int) (CPUShare, error) {
	machine, server, self, err := m.read()
	if err != nil || msgs == 0 {
		return CPUShare{}, err
	}
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(msgs) }
	return CPUShare{MachineMs: per(machine - m.machine), ServerMs: per(server - m.server), BenchMs: per(self - m.self)}, nil
}

func (c CPUShare) String() string {
	return fmt.Sprintf("%.3f ms machine (Dovecot %.3f, bench %.3f)", c.MachineMs, c.ServerMs, c.BenchMs)
}
