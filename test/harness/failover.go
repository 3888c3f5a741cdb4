package harness

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Sender sends numbered messages from a fake server over one authenticated
// stream at a time, as a real server following SRV records would: it starts
// at addrs[first], and when the relay there ends the stream
// (system-shutdown), closes the connection or refuses a new one, it moves
// to the next address and resends a message whose write failed. IDs are
// prefix-0, prefix-1, … in order.
type Sender struct {
	// Refused counts the connection attempts that were refused.
	Refused atomic.Int64
	// Failovers counts the moves to another address.
	Failovers atomic.Int64
}

// Send sends n messages from user u@from to v@to, one every pace, and
// returns when the last was written.
func (snd *Sender) Send(t testing.TB, fake *FakeServer, addrs []string, first int, from, to, prefix string, n int, pace time.Duration) {
	t.Helper()
	var (
		sc    *Script
		ended atomic.Bool
		at    = first % len(addrs)
	)
	dial := func(moveOn bool) {
		if moveOn {
			at = (at + 1) % len(addrs)
			snd.Failovers.Add(1)
		}
		deadline := time.Now().Add(WaitTimeout)
		for {
			s, err := fake.TryDial(t, addrs[at], from, to)
			if err == nil {
				sc = s
				ended.Store(false)
				go func() { // watch for the relay's end of the stream
					for {
						if _, err := s.Next(); err != nil && !strings.Contains(err.Error(), "timeout") {
							ended.Store(true)
							return
						}
					}
				}()
				return
			}
			if strings.Contains(err.Error(), "refused") {
				snd.Refused.Add(1)
				at = (at + 1) % len(addrs)
				snd.Failovers.Add(1)
			}
			if time.Now().After(deadline) {
				t.Errorf("sender %s→%s: no relay takes a stream: %v", from, to, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	dial(false)
	for i := 0; i < n && sc != nil; i++ {
		if ended.Load() {
			sc.Close()
			dial(true)
		}
		msg := Message("u@"+from, "v@"+to, fmt.Sprintf("%s-%d", prefix, i), "hi")
		for sc != nil && sc.Write(msg) != nil {
			sc.Close()
			dial(true)
		}
		time.Sleep(pace)
	}
}
