package harness

import (
	"fmt"
	"testing"
	"time"
)

// WaitTimeout bounds every wait of the harness. It is generous: the tests
// run under -race on small, shared machines, and a wait ends as soon as its
// condition holds.
const WaitTimeout = 15 * time.Second

// pollEvery is the polling interval of Eventually.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds, and fails the test if it does not
// within WaitTimeout. what describes the condition for the failure message.
func Eventually(t testing.TB, cond func() bool, what string, args ...any) {
	t.Helper()
	if !poll(WaitTimeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", WaitTimeout, fmt.Sprintf(what, args...))
	}
}

// poll reports whether cond held before timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}
