package s2s

import (
	"errors"
	"time"
)

// Parking. An idle stream's goroutine costs its stack, 4 KiB at least
// however shallow the wait (the runtime halves a stack only while it uses
// under a quarter of it), about as much as the rest of the stream's state
// (issue 11: at most 20 KiB of RSS per idle authenticated stream). So a
// stream quiet past idleGrace gives its goroutine up: WaitIdle returns
// errPark, the owner unwinds (the wire.Reader takes a read error as one to
// retry, with nothing buffered) and, as the last thing it does, hands the
// socket to the parker (park_linux.go: an epoll set of its own). Input, a
// hang-up, the idle deadline (a timer) or stop (shutdown, kill, a reload)
// resumes the stream on a new goroutine, which reads on where the old one
// left off. On systems without epoll nothing parks.

// errPark is WaitIdle's request that the owner park the stream; it never
// leaves the owner.
var errPark = errors.New("stream parked")

// park hands the stream to the parker; resume runs on a new goroutine when
// the stream wakes. It is the owner's last act: from its return, the stream
// may already be someone else's. It reports false, with the stream still
// the caller's, if the stream cannot park (then it must not again).
func (d *deadlineReader) park(resume func()) bool {
	if !d.rcKnown || d.rc == nil {
		return false
	}
	fd := int32(-1)
	if err := d.rc.Control(func(s uintptr) { fd = int32(s) }); err != nil || fd < 0 {
		return false
	}
	// An unpark may come as soon as parked is set (the socket is readable
	// already, say): parkMu makes it wait until the stream is set up.
	d.parkMu.Lock()
	d.parkFD, d.resumeFn, d.resuming = fd, resume, true
	d.parked.Store(true)
	if !parking.add(fd, d) {
		took := !d.parked.CompareAndSwap(true, false)
		if !took {
			d.resuming = false
		}
		d.parkMu.Unlock()
		return took // a stop's unpark got there first: it resumes the stream
	}
	if !d.parkUntil.IsZero() {
		d.parkTimer = time.AfterFunc(time.Until(d.parkUntil), d.unpark)
	}
	d.parkMu.Unlock()
	// A stop that came before parked was set did not see it: look again
	// (stop sets stopped before it looks at parked).
	if d.stopped.Load() {
		d.unpark()
	}
	return true
}

// unpark resumes a parked stream on a new goroutine; it does nothing if the
// stream is not parked (or another unpark got there first). Any goroutine.
func (d *deadlineReader) unpark() {
	if !d.parked.CompareAndSwap(true, false) {
		return
	}
	d.parkMu.Lock()
	parking.remove(d.parkFD, d)
	if t := d.parkTimer; t != nil {
		t.Stop()
		d.parkTimer = nil
	}
	resume := d.resumeFn
	d.resumeFn = nil
	d.parkMu.Unlock()
	go resume()
}
