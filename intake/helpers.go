package intake

import "time"

// helpers runs Stage's background work (storing and parsing a message
// while the next one downloads) on goroutines that outlive one message.
// A new goroutine a message started with a small stack, which the
// parser's deep calls then grew, copying it each time: 5 % of the
// daemon's CPU in a backlog drain (runtime.newstack under Stage's
// goroutine in the bench's CPU profile). A helper waits helperIdle for
// more work and then ends, so an idle daemon keeps none.
//
// How many messages are held and parsed at once is bounded by
// Pipeline.parsing, not here: a job finds an idle helper or starts one.
type helpers struct {
	jobs chan func()   // unbuffered: a send succeeds only into an idle helper
	idle time.Duration // how long a helper waits for its next job
}

// helperIdle is how long a helper waits for its next job.
const helperIdle = time.Second

func newHelpers() *helpers { return &helpers{jobs: make(chan func()), idle: helperIdle} }

// run runs job on an idle helper, or on a new one when none is idle.
func (h *helpers) run(job func()) {
	select {
	case h.jobs <- job:
	default:
		go h.work(job)
	}
}

// work runs job, then the jobs handed to it until it has been idle for
// h.idle.
func (h *helpers) work(job func()) {
	idle := time.NewTimer(h.idle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(h.idle)
		select {
		case job = <-h.jobs:
		case <-idle.C:
			return
		}
	}
}
