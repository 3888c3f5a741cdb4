package s2s

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/routing"
)

// A link that is up has one goroutine for as long as it lives: its owner,
// which reads what the peer sends (nearly nothing on an outbound stream)
// and waits on the socket while there is nothing (WaitIdle), with a small
// stack. Writing needs a deeper one (TLS), and an idle link has nothing to
// write for minutes, so its writer runs only while there is work: a
// writer writes what is queued, waits for more while the link is busy, and
// after idleGrace without anything to write it parks, that is, it ends.
// The next wake-up (a stanza, stop or drain, or the link's timer for its
// idle timeout and keepalives) starts a new one. At most one writer runs
// at a time; the owner waits for it before it closes the stream (issue 11:
// an idle link costs one goroutine and one timer, not two goroutines, two
// timers and their channels).
type writers struct {
	wmu    sync.Mutex     // guards starting a writer against stopWriting
	parked atomic.Bool    // no writer runs; set and cleared under wmu
	ending atomic.Bool    // stopWriting: no new writer (set under wmu)
	wwg    sync.WaitGroup // the running writer
	wo     *outStream     // the stream writers write to (set before the first)

	// The writer's (one at a time, handed over through wmu).
	tick   *time.Timer // wakes a writer: calls signal
	tickAt time.Time   // when tick fires, zero if not armed
	active time.Time   // when the link last wrote stanzas (idle timeout)
	sent   time.Time   // when it last wrote anything (keepalives)
	wended bool        // a writer ended the stream, with werr (guarded by link.mu)
	werr   error
}

// startWriting starts the first writer of a link that is now up, which
// writes what was queued during the setup.
func (l *link) startWriting(o *outStream) {
	l.prepareWriting(o)
	l.wmu.Lock()
	l.wwg.Add(1)
	go l.writer(o)
	l.wmu.Unlock()
}

// prepareWriting sets up what writers share, before the first runs.
func (l *link) prepareWriting(o *outStream) {
	now := time.Now()
	l.wlock.Lock()
	defer l.wlock.Unlock()
	l.wo, l.active, l.sent = o, now, now
	l.tick = time.AfterFunc(time.Hour, l.signal)
	l.tick.Stop()
}

// stopWriting makes sure that no writer runs or starts any more, and
// reports whether one ended the stream, and why.
func (l *link) stopWriting() (error, bool) {
	l.wmu.Lock()
	l.ending.Store(true)
	l.wmu.Unlock()
	select { // wakes a writer waiting for work
	case l.wake <- struct{}{}:
	default:
	}
	l.wwg.Wait()
	// An inline write under way ends first (it never waits on the socket);
	// what one left for a writer that will not run now is bounced, and
	// its bytes dropped before the stream's last words are written.
	l.wlock.Lock()
	q := l.carry
	l.carry, l.inlineErr = nil, nil
	l.wlock.Unlock()
	if q != nil {
		l.wo.hold.discard()
		l.failBatches(q, fmt.Errorf("writing to %s: the stream closed", l.pair.To))
	}
	l.tick.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.wended && l.stopErr != nil {
		// Stopped (kill) while the reader ended first (its connection
		// closed under it): the reason is the stop's.
		return l.stopErr, true
	}
	return l.werr, l.wended
}

// writer runs writeLoop. If it ends the stream, it wakes the owner (blocked
// reading) to close it.
func (l *link) writer(o *outStream) {
	defer l.wwg.Done()
	var (
		err   error
		ended bool
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("panic in an outbound link's writer; closing it", "panic", p, "stack", string(debug.Stack()))
				err, ended = routing.Timeout(fmt.Errorf("internal error")), true
			}
		}()
		err, ended = l.writeLoop(o)
	}()
	if !ended {
		return
	}
	l.mu.Lock()
	if !l.wended {
		l.wended, l.werr = true, err
	}
	l.mu.Unlock()
	if o.dr != nil {
		o.dr.stop()
	}
}

// park ends the running writer, arming the link's timer for due (its idle
// timeout or next keepalive). It reports false if a wake-up came as it
// parked: then this writer goes on.
func (l *link) park(now, due time.Time) bool {
	l.arm(now, due)
	l.wmu.Lock()
	if l.ending.Load() {
		l.wmu.Unlock()
		return true
	}
	l.parked.Store(true)
	l.wmu.Unlock()
	// A signal from now on starts a new writer; one that came before
	// left its token in wake.
	select {
	case <-l.wake:
		l.wmu.Lock()
		defer l.wmu.Unlock()
		if l.parked.Load() && !l.ending.Load() {
			l.parked.Store(false)
			return false
		}
		return true // another writer started, or the owner ends
	default:
		return true
	}
}

// unpark starts a writer if none runs.
func (l *link) unpark() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.parked.Load() && !l.ending.Load() {
		l.parked.Store(false)
		l.wwg.Add(1)
		go l.writer(l.wo)
	}
}

// arm makes the link's timer wake a writer at t at the latest. A timer
// already armed for an earlier time is left alone: the writer it wakes
// arms it again, so a busy link does not reset it on every batch.
func (l *link) arm(now, t time.Time) {
	if !l.tickAt.IsZero() && now.Before(l.tickAt) && !t.Before(l.tickAt) {
		return
	}
	l.tick.Reset(t.Sub(now))
	l.tickAt = t
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// A stream that feeds a link defers its wake-up (Stanza.Defer) until it
// has handed over all it read and is about to read its socket again. The
// link's writer then ran on another thread: at 50 % of the maximum rate,
// the hand-over made the relay's threads wait for a CPU (runnable, not
// running) 510-556 ms per second of load, and a woken writer often waited
// 100-300 µs while the stream went on reading. So the stream writes the
// link's batches itself, when that cannot make it wait: no writer is
// writing (wlock), no stream management or shared stream is involved,
// what waits fits one write (holdBytes), TLS's records go into the
// holdConn's buffer (tryHold: no write below TLS is under way, so none can
// hold TLS's lock while it waits), and the socket takes what it will
// without waiting (flushNow). What the socket did not take is left to the
// writer (carry), woken as before, which writes it first and with the
// write deadline. Measured beside the hand-over, 50 % phase at a fixed
// 260k stanzas/s (see the commit): the first stanza of a tick arrived 0.40
// ms after it was sent instead of 0.56 (medians of 4 runs), the relay used
// 16 % less CPU, and its threads waited 343 ms per second instead of 530.
// A stream that is behind its peer leaves the writing to the writer
// (inConn.wakeLinks): at higher rates the write ran better beside the
// reading than after it.

// writeInline writes what waits on the caller's goroutine if it can
// without waiting, and reports whether nothing is left for the writer.
func (l *link) writeInline() bool {
	if !l.wlock.TryLock() {
		return false // a writer is writing: it takes what was added
	}
	defer l.wlock.Unlock()
	o := l.wo
	if o == nil || o.hold == nil || l.sm != nil || l.mux != nil || l.onInbound || l.carry != nil || l.inlineErr != nil || l.ending.Load() {
		return false
	}
	l.mu.Lock()
	// A writer that ended the stream (it failed) leaves the queue to be
	// rerouted when the link ends, not written to a broken connection.
	n, quit := l.qbytes, l.draining || l.stopErr != nil || l.wended
	l.mu.Unlock()
	switch {
	case quit || n > holdBytes:
		return false
	case n == 0:
		return true
	case !o.hold.tryHold():
		return false
	}
	q := l.take(l.wspare)
	now := time.Now()
	l.writing.Store(now.UnixNano())
	var err error
	for _, b := range q {
		l.s.Router.SettleTally(routing.Sending, l.pair, b.recs, &b.tally)
		if err = o.w.WriteDirect(b.buf); err != nil {
			break
		}
	}
	all := false
	if err == nil {
		all, err = o.hold.flushNow()
	}
	switch {
	case err != nil:
		o.hold.discard()
		l.writing.Store(0)
		err = fmt.Errorf("writing to %s: %w", l.pair.To, err)
		l.failBatches(q, err)
		clear(q)
		l.wspare = q[:0]
		l.inlineErr = routing.Timeout(err)
		return false
	case !all:
		l.carry, l.wspare = q, nil // still holding: the writer flushes the rest
		return false
	}
	l.wroteAll(q)
	clear(q)
	l.active, l.sent = now, now
	if !o.hold.releaseIfEmpty() {
		// TLS wrote into the hold after the flush (the reader answering
		// the peer): the writer writes that, still holding.
		l.carry, l.wspare = q[:0], nil
		return false
	}
	l.writing.Store(0)
	l.wspare = q[:0]
	return true
}

// finishInline writes what an inline write left (carry), waiting on the
// socket within the write deadline as the writer's writes do, or returns
// the error an inline write met, which ends the stream.
func (l *link) finishInline(o *outStream) error {
	if err := l.inlineErr; err != nil {
		l.inlineErr = nil
		return err
	}
	q := l.carry
	l.carry = nil
	now := time.Now()
	o.raw.SetWriteDeadline(now.Add(l.s.Limits.WriteTimeout))
	if err := o.hold.flush(); err != nil {
		o.hold.discard()
		l.writing.Store(0)
		err = fmt.Errorf("writing to %s: %w", l.pair.To, err)
		l.failBatches(q, err)
		return routing.Timeout(err)
	}
	o.hold.release()
	l.writing.Store(0)
	l.wroteAll(q)
	l.active, l.sent = now, now
	return nil
}

// wroteAll counts the batches of q as written and releases them.
func (l *link) wroteAll(q []*batch) {
	l.countWritten(q)
	for _, b := range q {
		b.release()
	}
}

// failBatches bounces the stanzas of q, which may or may not have reached
// the peer (as write does), and releases the batches.
func (l *link) failBatches(q []*batch, err error) {
	failed := routing.Timeout(err)
	for _, b := range q {
		l.s.Router.Settle(routing.Failed, l.pair, b.stanzas(), failed)
		b.release()
	}
}
