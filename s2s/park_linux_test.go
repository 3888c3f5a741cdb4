package s2s

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestParkerWaitsInPoller: while streams are parked, the parker's loop
// waits in Go's poller ("IO wait"), not in a blocking epoll_wait (a
// goroutine in a system call keeps its P until the runtime takes it back,
// which with two Ps left a busy link's writer without one: issue 11). A
// parked stream still resumes when its peer writes.
func TestParkerWaitsInPoller(t *testing.T) {
	ours, peer := tcpPair(t)

	d := &deadlineReader{raw: ours, conn: ours, rc: rawConnOf(ours), rcKnown: true}
	resumed := make(chan struct{})
	if !d.park(func() { close(resumed) }) {
		t.Fatal("the stream did not park")
	}
	state := ""
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if state = parkerState(); state != "" && state != "running" && state != "runnable" {
			break
		}
	}
	if state != "IO wait" {
		t.Errorf("the parker's loop waits in state %q, want \"IO wait\" (the poller)", state)
	}
	if _, err := peer.Write([]byte("<presence/>")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-resumed:
	case <-time.After(5 * time.Second):
		t.Fatal("input did not resume the parked stream")
	}
}

// parkerState returns the state of the goroutine running parker.loop, as
// the runtime's stack dump gives it, or "" if there is none.
func parkerState() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "s2s.(*parker).loop") {
			continue
		}
		head, _, _ := strings.Cut(g, "\n")
		_, st, ok := strings.Cut(head, "[")
		if !ok {
			return ""
		}
		st, _, _ = strings.Cut(st, "]")
		st, _, _ = strings.Cut(st, ",") // "syscall, 2 minutes"
		return st
	}
	return ""
}
