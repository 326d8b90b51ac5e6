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
func runOn(t *testing.T, h *helpers) string {
	t.Helper()
	ran := make(chan string, 1)
	h.run(func() { ran <- goroutineID() })
	return started(t, ran)
}

// started returns what a job sent on ran; it fails the test when the job
// has not run within 10 s (it waits somewhere).
func started(t *testing.T, ran <-chan string) string {
	t.Helper()
	select {
	case id := <-ran:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("job handed to run did not run within 10 s")
		return ""
	}
}

func TestHelperRunsTheNextJobOnceIdle(t *testing.T) {
	h := newHelpers()
	first := runOn(t, h)
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
	defer close(release)
	ran := make(chan string, 1)
	h.run(func() { ran <- goroutineID(); <-release })
	busy := started(t, ran)
	if other := runOn(t, h); other == busy {
		t.Fatalf("a job waited for the busy helper (goroutine %s)", busy)
	}
}

func TestIdleHelperEnds(t *testing.T) {
	h := newHelpers()
	h.idle = 10 * time.Millisecond
	id := runOn(t, h)
	deadline := time.Now().Add(10 * time.Second)
	for alive(id) {
		if time.Now().After(deadline) {
			t.Fatalf("helper (goroutine %s) still alive 10 s after its last job; idle limit %v", id, h.idle)
		}
		runtime.Gosched()
	}
}
