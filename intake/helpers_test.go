package intake

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// goroutineID is the calling goroutine's number, as stack dumps show it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// alive reports whether goroutine id is in the dump of all goroutines.
func alive(id string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Contains(buf, []byte(fmt.Sprintf("goroutine %s [", id)))
}

// runOn runs a job on h and returns the goroutine it ran on.
func runOn(h *helpers) string {
	ran := make(chan string)
	h.run(func() { ran <- goroutineID() })
	return <-ran
}

func TestHelperRunsTheNextJobOnceIdle(t *testing.T) {
	h := newHelpers()
	first := runOn(h)
	// Once back from the job, the helper takes the next one itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ran := make(chan string, 1)
		select {
		case h.jobs <- func() { ran <- goroutineID() }:
			if got := <-ran; got != first {
				t.Fatalf("the idle helper's job ran on goroutine %s, want %s", got, first)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper never took a second job")
		}
		runtime.Gosched()
	}
}

func TestBusyHelperLeavesTheJobToAnother(t *testing.T) {
	h := newHelpers()
	release := make(chan struct{})
	started := make(chan string)
	h.run(func() { started <- goroutineID(); <-release })
	busy := <-started
	if other := runOn(h); other == busy {
		t.Fatalf("a job waited for the busy helper (goroutine %s)", busy)
	}
	close(release)
}

func TestIdleHelperEnds(t *testing.T) {
	h := newHelpers()
	h.idle = 10 * time.Millisecond
	id := runOn(h)
	deadline := time.Now().Add(10 * time.Second)
	for alive(id) {
		if time.Now().After(deadline) {
			t.Fatalf("helper (goroutine %s) still alive 10 s after its last job; idle limit %v", id, h.idle)
		}
		runtime.Gosched()
	}
}
