package s2s

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// link is the outbound stream of one domain pair (RFC 6120 §10.1: one
// stream per pair). Producers (the inbound streams, the router's bounces)
// append each stanza's bytes to the link's current batch, with a record of
// its facts; while the link connects and authenticates the batch grows, in
// order, within limits.queue_stanzas and queue_bytes. The link's owner
// goroutine takes the whole batch and writes its bytes to the connection in
// one call, so a stanza is copied twice on its way through the relay: from
// the read buffer into the batch, and from the batch into a TLS record.
type link struct {
	s      *Server
	pair   routing.Pair
	report func(error)
	log    *slog.Logger

	reportOnce sync.Once

	mu       sync.Mutex
	conn     net.Conn // the connection once open, for kill
	pending  []*batch // what waits, in order; producers append to the last
	qn       int      // stanzas in pending
	qbytes   int      // bytes in pending
	wspare   []*batch // the writer's: the slice take hands back to pending (writer only)
	closed   bool
	draining bool
	face     policy.Face // for its log records (streamlog.go): fixed when made, as the pair is
	stopErr  error       // set by stop: close with this stream error
	wake     chan struct{}
	// wlock is held by whoever writes the link's stanzas: its writer while
	// it runs (not while it waits between bursts), or a feeding stream
	// writing them itself (writeInline). The writers' fields (writers)
	// are guarded by it, and so are carry and inlineErr.
	wlock     sync.Mutex
	carry     []*batch      // batches an inline write left partly in the holdConn, for the writer (empty: only bytes TLS added)
	inlineErr error         // an inline write's error, for the writer to end the stream with
	up        bool          // authenticated: the queue only waits for the writer
	stalled   bool          // a stanza waited for room in vain: refuse at once until the writer takes the queue
	writing   atomic.Int64  // when the writer's current write to the peer began (Unix ns), 0 outside writes
	space     chan struct{} // closed by take, for Enqueue calls waiting for room
	gate      *routeGate    // the internal route's, nil towards a remote domain
	gated     int           // bytes queued before up, counted in gate
	theirs    bool          // it took a stanza that was not the relay's own
	remote    bool          // towards a remote domain: counted in Server.remoteLinks (lmu)
	out       *outStream    // the stream once up (guarded by mu), for the admin API
	peerMax   int           // the peer's XEP-0478 max-bytes once up, 0 if none (guarded by mu)
	// sm is what the peer has not acknowledged yet, when the stream has
	// XEP-0198 on (set before the writer and reader start; nil without).
	sm        *smOut
	ackDue    atomic.Bool   // the peer asked for our count (<r/>): the writer answers
	revIn     atomic.Uint32 // stanzas the peer sent on the stream (bidi), modulo 2^32: our count
	onInbound bool          // it writes on an inbound stream (bidi): one writer, no owner (set before it runs)
	// mux is the stream shared with other pairs (multiplex.go): the one
	// this link carries them on (mux.carrier == l), or the one it rides.
	// Set when the link comes up (guarded by mu; fixed once up).
	mux *muxStream

	started  time.Time    // when the link was made
	bytesOut atomic.Int64 // their bytes
	auth     policy.Auth  // how the relay authenticated, once up (metrics)
	written  atomic.Int64 // stanzas written (metrics, admin API)

	writers // once up, a writer runs only while there is work (linkwriter.go)
}

// batch is a run of stanzas waiting in a link: their bytes, one after the
// other, and a record of each (its facts, with Raw and Body nil) to settle
// it by once written, or to bounce or reroute it if it is not.
type batch struct {
	buf  []byte
	recs []routing.Stanza
	ends []int // where each stanza's bytes end in buf
	// ids holds the records' ids: a stanza's id is lent to the link
	// (routing.Stanza), which copies it here rather than into a string
	// of its own, so that a forwarded stanza allocates nothing for it.
	// Records leave the batch only through Settle, which copies what it
	// keeps, and stanzas(), which gives them ids of their own.
	ids []byte
	// tally is what the router needs of recs once they are written,
	// counted by the producers as they add them (routing.Tally): the
	// writer settles the batch without reading its records.
	tally routing.Tally
}

// batchBytes is the room of a batch's buffer. Producers start a new batch
// rather than grow a full one, so bytes are copied once into a batch, never
// again when it grows; only a stanza bigger than a batch makes one grow.
const batchBytes = 64 << 10

// batches recycles batches between links: a link holds them only while
// stanzas wait in it or are being written.
var batches = sync.Pool{New: func() any { return &batch{buf: make([]byte, 0, batchBytes)} }}

// A link that is not up yet starts with a small batch: most links carry a
// stanza or two while they connect, and thousands of them setting up at
// once (a burst to new domains) would each hold a 64 KiB batch, which the
// pool then keeps for two garbage collections (issue 11).
const firstBatchBytes = 2 << 10

var firstBatches = sync.Pool{New: func() any { return &batch{buf: make([]byte, 0, firstBatchBytes)} }}

func (b *batch) release() {
	// The records are not cleared: clearing them was the writer's last
	// touch of their cache lines, which the next producer then had to take
	// back from the writer's CPU (issue 11). A pooled batch keeps the
	// strings of its last records alive (their addresses; the ids are in
	// b.ids) until its next use, or until the pool drops it at the second
	// garbage collection: no more than the batch held while it was in use.
	b.recs, b.ends, b.ids = b.recs[:0], b.ends[:0], b.ids[:0]
	b.tally = routing.Tally{}
	b.buf = b.buf[:0]
	switch cap(b.buf) {
	case batchBytes:
		batches.Put(b)
	case firstBatchBytes:
		firstBatches.Put(b)
	}
	// Otherwise grown for a big stanza: left to the garbage collector.
}

// stanzas returns the records with Raw set to each stanza's bytes in buf:
// what the router needs to bounce or reroute them. Their Raw points into
// buf until the batch is released; their ids are their own.
func (b *batch) stanzas() []routing.Stanza {
	start := 0
	for i := range b.recs {
		b.recs[i].Raw = b.buf[start:b.ends[i]:b.ends[i]]
		b.recs[i].ID = strings.Clone(b.recs[i].ID)
		start = b.ends[i]
	}
	return b.recs
}

// newLink makes the link of pair. s.lmu must be held.
func (s *Server) newLink(pair routing.Pair, report func(error)) *link {
	face := s.faceOf(pair)
	l := &link{s: s, pair: pair, face: face, report: report, wake: make(chan struct{}, 1), started: time.Now()}
	l.log = newStreamLog(s.Log.Handler(), l)
	if addr, ok := s.Router.Table().Route(pair.To); ok {
		l.gate = s.gate(addr)
	}
	return l
}

// Enqueue implements routing.Link; it never waits on a stuck link. While
// the link is being set up the queue bounds (limits.queue_stanzas,
// queue_bytes) refuse at once. Once it is up, a full queue means the writer
// is behind. While the writer is not blocked on its peer (it only waits for
// a CPU, or writes quickly), Enqueue waits for room: back-pressure on a
// busy link, as before, for at most limits.write_timeout. When the writer
// has been blocked in a write to its peer for st.MaxWait
// (limits.stall_timeout, while the feeding stream's stall budget lasts),
// Enqueue records the wait in st.Waited (charged to that budget), marks the
// link stalled and refuses with ErrQueueFull (the stanza bounces with
// resource-constraint), as it does at once for every stanza until the
// writer moves again. A writer that cannot write at all is cut off at
// limits.write_timeout.
func (l *link) Enqueue(st *routing.Stanza) error {
	l.mu.Lock()
	if !l.closed && !l.draining && l.up && l.fits(len(st.Raw)) {
		// The usual case. The others are in a function of their own: a
		// function with a defer in a loop runs the runtime's deferreturn
		// on every return, which took 2.3 % of the relay's CPU under
		// load when this was one function.
		err := l.add(st)
		l.mu.Unlock()
		return err
	}
	return l.enqueueSlow(st)
}

// enqueueSlow is Enqueue for a link that is not up, closing, or full; l.mu
// is held and released on return.
func (l *link) enqueueSlow(st *routing.Stanza) error {
	defer l.mu.Unlock()
	var (
		timer *time.Timer
		start time.Time
	)
	for {
		switch {
		case l.closed || l.draining:
			return routing.ErrClosed
		case l.fits(len(st.Raw)):
			if !l.up && l.gate != nil {
				// Towards an internal route, what waits for links to come
				// up is bounded for the route, all pairs together.
				if !l.gate.reserve(len(st.Raw)) {
					return routing.ErrQueueFull
				}
				l.gated += len(st.Raw)
			}
			return l.add(st)
		case !l.up || st.MaxWait <= 0 || l.stalled:
			return routing.ErrQueueFull
		}
		if timer == nil {
			l.signal() // a deferred wake-up must not wait for room itself
			start = time.Now()
			timer = time.NewTimer(st.MaxWait)
			defer timer.Stop()
		}
		if l.space == nil {
			l.space = make(chan struct{})
		}
		space := l.space
		l.mu.Unlock()
		select {
		case <-space:
			l.mu.Lock()
		case <-timer.C:
			l.mu.Lock()
			ws := l.writingSince()
			stuck := ws != 0 && time.Since(time.Unix(0, ws)) >= st.MaxWait
			if !stuck && time.Since(start) < l.s.Limits.WriteTimeout {
				// The writer is not blocked on the network (it only waits
				// for a CPU, or its writes complete): a busy link, not a
				// stuck one. Waiting on it is back-pressure, as TCP would
				// apply; wait another period.
				timer.Reset(st.MaxWait)
				continue
			}
			// The writer has been blocked writing to its peer for a whole
			// period: until it takes the queue again, the next stanzas are
			// refused without waiting, so a stuck (or very slow) peer costs
			// its feeders one stall, not one per stanza, and only such a
			// wait counts against the stream's stall budget.
			st.Waited = time.Since(start)
			l.stalled = true
			return routing.ErrQueueFull
		}
	}
}

// fits reports whether a stanza of n bytes fits the queue bounds
// (limits.queue_stanzas, queue_bytes). One stanza always fits: its size was
// checked on reading. l.mu must be held.
func (l *link) fits(n int) bool {
	return l.qn == 0 || l.qn < l.s.Limits.QueueStanzas && l.qbytes+n <= l.s.Limits.QueueBytes
}

// add appends st to the current batch, unless it is larger than the peer
// accepts (XEP-0478): then it is refused with a SizeError, for a bounce the
// sender can act on, rather than sent to a peer that would close the
// stream. l.mu must be held.
func (l *link) add(st *routing.Stanza) error {
	var b *batch
	if n := len(l.pending); n > 0 {
		b = l.pending[n-1]
	}
	if b == nil || len(b.buf) > 0 && len(b.buf)+len(st.Raw) > cap(b.buf) {
		// None yet, or the last is full: a fresh one rather than a grown
		// one (a stanza bigger than a batch grows an empty one).
		if !l.up && len(l.pending) == 0 && l.qn == 0 {
			b = firstBatches.Get().(*batch)
		} else {
			b = batches.Get().(*batch)
		}
		l.pending = append(l.pending, b)
	}
	before := len(b.buf)
	b.buf = st.Bytes(b.buf)
	if n := len(b.buf) - before; l.peerMax > 0 && n > l.peerMax {
		b.buf = b.buf[:before]
		if before == 0 && len(b.recs) == 0 {
			l.pending = l.pending[:len(l.pending)-1]
			b.release()
		}
		return routing.TooLarge(l.pair.To, n, l.peerMax)
	}
	l.qn++
	l.qbytes += len(b.buf) - before
	b.ends = append(b.ends, len(b.buf))
	b.recs = append(b.recs, *st)
	l.theirs = l.theirs || !st.Own
	r := &b.recs[len(b.recs)-1]
	r.Raw, r.Body, r.Via, r.MaxWait, r.Waited, r.Defer = nil, nil, nil, 0, 0, false
	if n := len(st.ID); n > 0 {
		// Growing ids leaves the earlier records' ids in the old array,
		// which they keep alive: nothing is overwritten.
		b.ids = append(b.ids, st.ID...)
		r.ID = unsafe.String(&b.ids[len(b.ids)-n], n)
	}
	b.tally.Add(r)
	if !st.Defer || l.qbytes >= deferLimit {
		l.signal()
	}
	return nil
}

// refuseOversized bounces the stanzas queued while the link was set up that
// are larger than the peer turned out to accept (XEP-0478 max-bytes), and
// keeps the others in order.
func (l *link) refuseOversized() {
	l.mu.Lock()
	max := l.peerMax
	big := false
	for _, b := range l.pending {
		start := 0
		for _, e := range b.ends {
			big = big || max > 0 && e-start > max
			start = e
		}
	}
	if !big {
		l.mu.Unlock()
		return
	}
	q := l.pending
	l.pending, l.qn, l.qbytes = nil, 0, 0
	// Each stanza goes through add again, which refuses the ones over the
	// peer's limit; the others keep their order.
	type refusal struct {
		st  routing.Stanza
		err error
	}
	var refused []refusal
	for _, b := range q {
		for _, st := range b.stanzas() {
			st.Body = nil // Raw is already the bytes for this stream
			if err := l.add(&st); err != nil {
				st.Raw = bytes.Clone(st.Raw) // b goes back to the pool below
				refused = append(refused, refusal{st, err})
			}
		}
		b.release()
	}
	l.mu.Unlock()
	for _, r := range refused {
		l.s.Router.Settle(routing.Failed, l.pair, []routing.Stanza{r.st}, r.err)
	}
}

// deferLimit is how much a link lets pile up for a stream that said it
// would wake it (Stanza.Defer) before it wakes its writer anyway.
const deferLimit = 64 << 10

// Wake implements routing.Link: the feeding stream writes what waits
// itself if it can without waiting (writeInline), else the writer does.
func (l *link) Wake() {
	if !l.writeInline() {
		l.signal()
	}
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if l.parked.Load() {
		l.unpark() // no writer runs: start one
	}
}

// take removes and returns the batches that wait, in order, putting spare
// (emptied) in their place; the caller releases them.
func (l *link) take(spare []*batch) []*batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.pending
	if len(q) > 0 {
		l.pending, l.qn, l.qbytes = spare[:0], 0, 0
	} else {
		q = nil // pending keeps its (empty) slice; spare stays the caller's
	}
	l.stalled = false
	if l.space != nil {
		close(l.space)
		l.space = nil
	}
	return q
}

// drain makes the link write what it holds and close (Shutdown).
func (l *link) drain() {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.signal()
}

// kill ends the link at once (Server.Close, or a Shutdown past its
// deadline): its connection is closed under the writer's feet, and what it
// had not written is bounced.
func (l *link) kill() {
	l.stop(ErrServerClosed)
	l.mu.Lock()
	c, o := l.conn, l.out
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if o != nil {
		o.dr.unpark() // a parked reader learns of the close by reading
	}
}

// reportOutcome reports the setup's outcome to the breaker, once: from
// serve, or from run when serve ended before it could (a panic).
func (l *link) reportOutcome(err error) {
	l.reportOnce.Do(func() { l.report(err) })
}

// stop makes the link close its stream with err.
func (l *link) stop(err error) {
	l.mu.Lock()
	if l.stopErr == nil {
		l.stopErr = err
	}
	l.mu.Unlock()
	l.signal()
}

// deniedBy closes the link with policy-violation if p no longer allows its
// remote domain (hot reload).
func (l *link) deniedBy(p *policy.Policy) bool {
	remote := l.pair.To
	if l.s.faceOf(l.pair) == policy.Internal {
		remote = l.pair.From
	}
	d := p.Domain(remote)
	if d.Allowed {
		return false
	}
	l.s.Audit(d.Record(time.Now(), policy.StreamState{Face: l.s.faceOf(l.pair), Dir: policy.Out, Remote: remote}, ""))
	l.stop(l.s.explain(l.s.faceOf(l.pair), d.Condition, d.Rule, "federation with %s is no longer allowed", remote))
	return true
}

// run sets the link up: it connects and authenticates while the stanzas
// routed meanwhile wait. Once the link is up, its reader owns it (own), and
// a writer runs only while there is something to write (linkwriter.go).
func (l *link) run() {
	defer l.s.wg.Done()
	l.s.stats.OutboundOpen.Add(1)
	l.s.stats.OutboundTotal.Add(1)
	var (
		o     *outStream
		leave func()
		err   error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("panic in an outbound link; closing it", "panic", p, "stack", string(debug.Stack()))
				err = routing.Timeout(fmt.Errorf("internal error"))
			}
		}()
		o, leave, err = l.serve()
	}()
	if err == nil && o != nil {
		// The owner of the stream from now on is a goroutine of its own,
		// whose stack holds nothing of the setup's. (A link that rode
		// another pair's stream has none: its ride is over.)
		l.s.wg.Add(1)
		go l.own(o, leave)
		return
	}
	l.end(err)
}

// own runs the link once it is up, until it ends, then retires it. It
// reads what the peer sends while writers (linkwriter.go) write what is
// queued; whichever ends the stream, it closes it, once no writer runs.
// While the link is idle, its goroutine waits on the socket, as shallow as
// it can be, so that its stack shrinks to the smallest (see WaitIdle).
//
// A link whose peer has sent nothing for idleGrace parks its reader: the
// goroutine ends, and the parker resumes the reading on a new one (ownRead)
// when the peer sends, or when a writer or kill stops the stream (see
// park.go).
func (l *link) own(o *outStream, leave func()) {
	l.startWriting(o)
	l.ownRead(o, leave)
}

// ownRead reads the link's stream until it ends or parks.
func (l *link) ownRead(o *outStream, leave func()) {
	for {
		err := l.read(o)
		if errors.Is(err, errPark) {
			if o.dr.park(func() { l.ownRead(o, leave) }) {
				return // the stream may already be another goroutine's
			}
			o.dr.parkable = false
			continue
		}
		err = l.closeStream(o, err)
		leave()
		l.end(err)
		l.s.wg.Done()
		return
	}
}

// end retires the link: the setup's outcome goes to the breaker (if
// nothing reported it yet), the stanzas it holds go back to the router.
func (l *link) end(err error) {
	// A half-open breaker waits for this outcome: it is reported on every
	// exit, a panic included (no-op if setup reported it).
	l.reportOutcome(err)
	l.finish(err)
	l.s.stats.OutboundOpen.Add(-1)
}

// serve connects and authenticates the link's stream within its route's
// gate, if it has one; leave releases the gate's connection once the
// stream ends.
func (l *link) serve() (o *outStream, leave func(), err error) {
	if rode, err := l.ride(); rode {
		return nil, nil, err // it rode another pair's stream, until err
	}
	started := time.Now()
	setupEnded := func() {}
	leave = func() {}
	if l.gate != nil {
		if err := l.gate.enter(started.Add(l.s.Limits.ConnectTimeout + l.s.Limits.NegotiationTimeout)); err != nil {
			return nil, nil, err
		}
		settingUp := true
		defer func() {
			if settingUp { // serve panicked during the setup
				l.gate.setupDone()
			}
			if o == nil { // failed or panicked: the stream is not carried
				l.gate.leave()
			}
		}()
		setupEnded = func() { l.gate.setupDone(); settingUp = false }
		leave = l.gate.leave
	}
	o, err = l.setup(started, setupEnded)
	if err != nil {
		return nil, nil, err
	}
	return o, leave, nil
}

// setup connects and authenticates the link's stream, retrying an internal
// route for limits.route_retry, and marks the link up. It runs on run's
// goroutine, so that its stack is not the idle link's (own's).
func (l *link) setup(started time.Time, setupEnded func()) (*outStream, error) {
	o, err := l.open()
	internal := l.s.Router.Table().IsInternal(l.pair.To)
	for tries := 1; err != nil; tries++ {
		wait, again := l.retryAfter(err, tries, internal, started)
		if !again || l.stopped() {
			break
		}
		if internal {
			l.log.Debug("internal route not reached; retrying", "err", err, "in", wait)
		} else {
			l.log.Info("remote server cut the connection while the relay authenticated; connecting once more", "err", err, "in", wait)
		}
		select {
		case <-time.After(wait):
		case <-l.s.ctx.Done():
			return nil, routing.Timeout(ErrServerClosed)
		}
		if l.stopped() {
			break
		}
		o, err = l.open()
	}
	setupEnded()
	l.reportOutcome(err)
	l.s.metrics.setup(l.s.faceOf(l.pair), started, err)
	if err != nil {
		return nil, err
	}
	o.raw.SetDeadline(time.Time{})
	o.dr.waitable = true // read by readLoop's goroutine, started below
	o.dr.parkable = canPark()
	l.mu.Lock()
	l.up = true
	if l.gate != nil {
		l.gate.release(l.gated)
		l.gated = 0
	}
	l.conn = o.raw
	l.out = o
	if o.feats != nil {
		l.peerMax = o.feats.MaxBytes
	}
	if o.sm {
		l.sm = &smOut{}
	}
	if l.mux = l.s.mux.up(l, o); l.mux != nil && l.sm != nil {
		l.sm.shared, l.sm.owner = l.mux, l
	}
	l.conn, l.auth = o.raw, o.auth
	stopped := l.stopErr
	l.mu.Unlock()
	if errors.Is(stopped, ErrServerClosed) {
		o.raw.Close() // killed while it was setting up
	}
	l.refuseOversized()
	l.log.Info("outbound stream up", "addr", o.cand.Address(), "tls", o.tls, "peer_authenticated_by", o.peerIdentity(),
		"stream_management", o.sm, "took", time.Since(started).Round(time.Millisecond))
	return o, nil
}

// closeStream closes the stream once its reader has ended with err and no
// writer runs any more, and returns what ended it.
func (l *link) closeStream(o *outStream, err error) error {
	if werr, ended := l.stopWriting(); ended {
		err = werr // a writer ended the stream, and woke the reader to close it
	}
	var se stream.Error
	if errors.As(err, &se) {
		o.abort(err)
	} else {
		o.close()
	}
	o.r.Release() // the reader has ended: the buffer goes back at once
	return err
}

// read runs readLoop; a panic there ends the link with an internal error.
func (l *link) read(o *outStream) (err error) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("panic in an outbound link; closing it", "panic", p, "stack", string(debug.Stack()))
			err = routing.Timeout(fmt.Errorf("internal error"))
		}
	}()
	return l.readLoop(o)
}

// open connects and authenticates the link's stream.
func (l *link) open() (*outStream, error) {
	ctx, cancel := context.WithTimeout(l.s.ctx, l.s.Limits.ConnectTimeout+l.s.Limits.NegotiationTimeout)
	defer cancel()
	o, err := l.s.openStream(ctx, l.pair.From, l.pair.To)
	if err != nil {
		return nil, err
	}
	if l.s.faceOf(l.pair) == policy.Federation {
		// The receiving server must be the remote domain before the relay
		// tells it anything, its dialback key included.
		if err := l.s.checkPeer(ctx, o); err != nil {
			o.abort(l.s.explain(policy.Federation, stream.PolicyViolation, "", "the relay could not authenticate this server as %s", l.pair.To))
			return nil, routing.Timeout(err)
		}
	}
	if tc, ok := o.conn.(*tls.Conn); ok {
		// Judged: the link keeps o.trust, not the certificates (the
		// relay's client configurations keep no session cache).
		dropPeerCertificates(tc)
	}
	stop := context.AfterFunc(ctx, o.dr.stop)
	err = o.authenticate()
	if !stop() || err != nil {
		dropped := err != nil && ctx.Err() == nil && cutOff(err)
		if err == nil {
			err = ctx.Err()
		}
		o.abort(err)
		err = fmt.Errorf("authenticating as %s to %s: %w", l.pair.From, l.pair.To, err)
		if dropped {
			err = droppedError{err}
		}
		return nil, routing.Timeout(err)
	}
	return o, nil
}

// retryAfter returns how long setup waits before it tries again after its
// attempt number tries failed with err, and whether it tries again.
//
// The organisation's own server (a configured route) is not a remote
// domain that may be gone for good: while it restarts, the link retries
// with a backoff from 100 ms to 1 s for up to limits.route_retry, holding
// the stanzas in its bounded queue, before it gives up and bounces them.
//
// A remote server that cut the connection while the relay authenticated,
// once it had accepted the connection, TLS and the relay's checks of its
// identity (droppedError), was most likely busy with something else.
// ejabberd 24.12 with XEP-0288 takes the relay's bidirectional stream as
// its own route to the relay's domain as soon as SASL EXTERNAL succeeds; a
// stanza it routes there before the relay has restarted the stream finds
// no stream to send on, and ejabberd closes the connection (interop lab,
// 8-secure-federation/bidi: a FIN or, if the relay's new header crossed
// it, a reset). It gets a second connection, once, before the stanzas
// bounce; a server that refuses the relay (a stream error, its </stream>,
// a failed dialback) does not.
func (l *link) retryAfter(err error, tries int, internal bool, started time.Time) (time.Duration, bool) {
	if internal {
		backoff := time.Second
		if tries <= 4 {
			backoff = 100 * time.Millisecond << (tries - 1) // 100, 200, 400, 800 ms
		}
		return backoff, time.Now().Add(backoff).Before(started.Add(l.s.Limits.RouteRetry))
	}
	var dropped droppedError
	return dropRetryDelay, tries == 1 && errors.As(err, &dropped)
}

// droppedError is a setup that failed because the peer cut the connection
// (reset, or closed it without closing the stream) while the relay
// authenticated, after it had accepted the connection, TLS and the relay's
// checks of its identity: setup tries such a remote domain once more.
type droppedError struct{ error }

func (e droppedError) Unwrap() error { return e.error }

// cutOff reports whether err is the connection cut under a stream: a
// reset, a broken pipe, or its end before the stream's (not a stream
// error, not the peer's </stream>).
func cutOff(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dropRetryDelay is how long setup waits before it connects again to a
// remote domain that cut the connection while the relay authenticated.
const dropRetryDelay = 100 * time.Millisecond

// stopped reports whether the link was asked to stop. A draining link is
// not: it still tries to deliver what it holds, retries included, until
// Shutdown's deadline stops it (kill).
func (l *link) stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopErr != nil
}

// errIdle ends a link that carried nothing for limits.idle_timeout.
var errIdle = errors.New("idle")

// writeLoop writes queued stanzas in batches, flushing when the queue is
// empty, until the link is idle, drained, stopped or its peer goes away
// (ended), or until it has had nothing to write for idleGrace: then it
// parks (ended false) and the next wake-up starts a new writer. With stream
// management it also answers the peer's acknowledgement requests, waits
// for acknowledgements when as much as the queue holds is unacknowledged,
// and ends the stream when a request stays unanswered for
// limits.ack_timeout.
func (l *link) writeLoop(o *outStream) (err error, ended bool) {
	l.wlock.Lock()
	defer l.wlock.Unlock()
	for {
		if l.carry != nil || l.inlineErr != nil {
			if err := l.finishInline(o); err != nil {
				return err, true
			}
		}
		if l.ackDue.Swap(false) {
			if err := l.answerAck(o); err != nil {
				return err, true
			}
		}
		if l.mux != nil {
			if err := l.mux.tend(o); err != nil {
				return err, true
			}
		}
		// With stream management, what waits for its acknowledgement is
		// bounded like the queue: when that is full the writer waits for
		// the peer, and to its feeders the link is blocked on its peer.
		written := false
		if l.sm != nil && l.sm.full(l.s.Limits.QueueBytes, l.s.Limits.QueueStanzas) {
			if l.writing.Load() == 0 {
				l.writing.Store(time.Now().UnixNano())
			}
		} else if q := l.take(l.wspare); len(q) > 0 {
			l.writing.Store(0)
			err := l.write(o, q)
			clear(q)
			l.wspare = q[:0]
			if err != nil {
				return err, true
			}
			written = true
		} else {
			l.writing.Store(0)
		}
		if l.mux != nil {
			// The other pairs on the stream, in the same pass.
			w, err := l.mux.writeRiders(o)
			if err != nil {
				return err, true
			}
			written = written || w
		}
		if written {
			l.active = time.Now()
			l.sent = l.active
			if l.mux != nil {
				continue
			}
			// The next pass waits for a wake-up: the producers that
			// deferred theirs (Stanza.Defer) wake the link once they have
			// handed over all they read, which the next pass then writes
			// in one call, rather than in pieces taken as they add them.
			select {
			case <-l.wake:
				continue
			default:
			}
		}
		l.mu.Lock()
		draining, stopErr := l.draining, l.stopErr
		l.mu.Unlock()
		if stopErr != nil {
			return stopErr, true
		}
		if draining {
			return nil, true
		}
		if l.ending.Load() {
			return nil, false // the owner ends the stream
		}
		now := time.Now()
		var ackAt time.Time // when the last acknowledgement request is overdue
		if l.sm != nil {
			if n, asked := l.unacked(); n > 0 { // the whole stream's, its riders' too
				if ackAt = asked.Add(l.s.Limits.AckTimeout); !now.Before(ackAt) {
					// A stream error, not a delivery error: what the peer
					// never acknowledged goes again over a new stream.
					return withText(stream.ConnectionTimeout, "%d stanzas written %s ago were never acknowledged (XEP-0198)",
						n, l.s.Limits.AckTimeout), true
				}
				// Not idle until the peer has acknowledged what it was
				// sent: closing now would send it again.
				l.active = now
			}
		}
		idleAt := l.active.Add(l.idleTimeout())
		if !now.Before(idleAt) && o.rev.active(l.idleTimeout()) {
			// The peer's stanzas still come on the stream (bidi).
			l.active = now
			idleAt = now.Add(l.idleTimeout())
		}
		if !now.Before(idleAt) {
			// Out of the table first, then closed: a stanza routed from
			// now on finds a new link instead of this retiring one (which
			// would refuse it and get it bounced). One that found this link
			// just before is still taken and written.
			l.s.removeLink(l)
			l.mu.Lock()
			if l.qn == 0 {
				l.closed = true
				l.mu.Unlock()
				return errIdle, true
			}
			l.mu.Unlock()
			l.active = now
			continue
		}
		keepAt := l.sent.Add(keepaliveEvery(l.s.Limits.IdleTimeout))
		if !now.Before(keepAt) {
			// RFC 6120 §4.6.1: a single space between elements finds a
			// dead connection, and keeps the peer's idle timer (and
			// middleboxes) from closing a quiet but wanted stream.
			o.raw.SetWriteDeadline(now.Add(l.s.Limits.WriteTimeout))
			o.w.WriteRaw([]byte{' '})
			if err := o.w.Flush(); err != nil {
				return routing.Timeout(fmt.Errorf("keepalive to %s: %w", l.pair.To, err)), true
			}
			l.sent = now
			continue
		}
		due := earliest(idleAt, keepAt)
		if !ackAt.IsZero() {
			due = earliest(due, ackAt)
		}
		quiet := l.active.Add(idleGrace)
		wakeAt := due
		switch {
		case now.Before(quiet):
			wakeAt = earliest(due, quiet)
		case l.onInbound:
			// A link riding an inbound stream (bidi) has no owner to
			// start writers: its one writer waits.
		default:
			if l.park(now, due) {
				return nil, false
			}
			continue // woken as it parked: it goes on
		}
		// Between two bursts: this writer waits for the next.
		l.arm(now, wakeAt)
		l.wlock.Unlock() // a feeding stream may write meanwhile (writeInline)
		select {
		case <-l.wake:
		case <-l.s.ctx.Done():
			l.wlock.Lock()
			return ErrServerClosed, true
		}
		l.wlock.Lock()
	}
}

// idleTimeout is how long the link stays open with nothing to write:
// limits.idle_timeout, or the shorter limits.bounce_idle_timeout while it
// has carried only the relay's own stanzas (a dead domain's bounces).
func (l *link) idleTimeout() time.Duration {
	l.mu.Lock()
	theirs := l.theirs
	l.mu.Unlock()
	if theirs || l.s.Limits.BounceIdleTimeout <= 0 {
		return l.s.Limits.IdleTimeout
	}
	return min(l.s.Limits.BounceIdleTimeout, l.s.Limits.IdleTimeout)
}

// keepaliveEvery is the whitespace keepalive interval of a link: a third of
// the idle timeout, at most five minutes (Prosody sends one after 840 s).
func keepaliveEvery(idle time.Duration) time.Duration {
	return max(min(idle/3, 5*time.Minute), time.Second)
}

// write writes the batches of q, each in one call, and releases them, or,
// with stream management, hands them to l.sm until the peer acknowledges
// them, with an acknowledgement request after the last. Stanzas of a batch
// whose write failed may or may not have reached the peer; they are
// bounced, since silence would be worse than a possibly spurious error, and
// so are those of the batches after it.
func (l *link) write(o *outStream, q []*batch) error {
	now := time.Now()
	l.writing.Store(now.UnixNano())
	defer l.writing.Store(0)
	o.raw.SetWriteDeadline(now.Add(l.s.Limits.WriteTimeout))
	if l.sm != nil {
		last := q[len(q)-1]
		last.buf = append(last.buf, smRequest...) // after the stanzas' ends: never sent again
		if l.sm.shared != nil {
			l.sm.shared.writing(q) // the peer may acknowledge them before wrote records them
		}
	}
	// The batches' TLS records are gathered (holdConn) and written in one
	// call per holdBytes; a batch is written once the call that carries
	// its end returns.
	o.hold.hold()
	failed := true
	defer func() {
		if failed {
			o.hold.discard()
		} else {
			o.hold.release()
		}
	}()
	done := 0 // q[:done] are written
	for i, b := range q {
		l.s.Router.SettleTally(routing.Sending, l.pair, b.recs, &b.tally)
		err := o.w.WriteDirect(b.buf)
		if err == nil && (i == len(q)-1 || o.hold.held() >= holdBytes) {
			if err = o.hold.flush(); err == nil {
				l.countWritten(q[done : i+1])
				done = i + 1
			}
		}
		if err != nil {
			if l.sm != nil {
				l.sm.wrote(q[:done], now) // written: the peer may have them
			} else {
				for _, b := range q[:done] {
					b.release()
				}
			}
			l.failBatches(q[done:], fmt.Errorf("writing to %s: %w", l.pair.To, err))
			return err
		}
	}
	failed = false
	if l.sm != nil {
		l.sm.wrote(q, now)
		return nil
	}
	for _, b := range q {
		b.release()
	}
	return nil
}

// countWritten counts the batches of bs as written, once the call that carried
// their ends has returned, and settles them (with stream management, the
// peer's acknowledgement settles them).
func (l *link) countWritten(bs []*batch) {
	for _, b := range bs {
		if l.sm == nil {
			l.s.Router.SettleTally(routing.Written, l.pair, b.recs, &b.tally)
		}
		l.written.Add(int64(len(b.recs)))
		l.bytesOut.Add(int64(len(b.buf)))
	}
}

// answerAck answers the peer's acknowledgement request on our outbound
// stream with the number of stanzas it sent on it (only with bidi are there
// any), each routed or refused before the next was read.
func (l *link) answerAck(o *outStream) error {
	o.raw.SetWriteDeadline(time.Now().Add(l.s.Limits.WriteTimeout))
	o.w.WriteRaw(appendAck(nil, l.revIn.Load()))
	if err := o.w.Flush(); err != nil {
		return routing.Timeout(fmt.Errorf("writing to %s: %w", l.pair.To, err))
	}
	return nil
}

// readLoop reads what the peer sends on our outbound stream: whitespace,
// dialback answers, the peer's stanzas if the relay asked for XEP-0288 bidi
// (refused otherwise) and, at the end, a stream error or the closing tag.
func (l *link) readLoop(o *outStream) error {
	rev := l.reverseOf(o) // the peer's stanzas: routed with bidi, refused without
	defer rev.events.flush(l.log)
	// The peer's last stanzas may have gone to links whose wake-up was
	// deferred to the next read, which never comes.
	defer rev.wake()
	for {
		el, err := o.r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errPeerClosed
			}
			return err
		}
		switch el.Kind {
		case wire.Space, wire.DialbackVerify:
		case wire.DialbackResult:
			if l.mux != nil { // the answer for another pair (multiplex.go)
				if err := l.mux.answer(el.Raw); err != nil {
					return err
				}
			}
		case wire.StreamError:
			return parseStreamError(el.Raw)
		case wire.Message, wire.Presence, wire.IQ:
			// With stream management the peer's stanzas (bidi) are what
			// its acknowledgement requests count.
			l.revIn.Add(1)
			if err := rev.stanza(el); err != nil {
				return err
			}
		case wire.Other:
			if string(el.NS) != NSSM || l.sm == nil {
				l.log.Debug("ignoring an element on our outbound stream", "element", elementName(el))
				break
			}
			switch string(el.Local) {
			case "a":
				if err := l.handleAck(el.Raw); err != nil {
					return err
				}
			case "r":
				l.ackDue.Store(true)
				l.signal()
			}
		default:
			l.log.Debug("ignoring an element on our outbound stream", "element", elementName(el))
		}
	}
}

var errPeerClosed = errors.New("the peer closed the stream")

// finish retires the link. Stanzas still queued go back to the router: if
// the link never came up they are bounced; if it ended after working (idle,
// the peer closed, shutdown) they are routed again over a new link.
func (l *link) finish(err error) {
	l.s.removeLink(l)
	if l.mux != nil && l.mux.carrier == l {
		l.mux.end(err) // the pairs that ride the stream end with it
	}
	defer l.s.metrics.retire(l)
	l.mu.Lock()
	l.closed = true
	wasUp := l.up
	if l.gate != nil {
		l.gate.release(l.gated)
		l.gated = 0
		defer l.gate.drop()
	}
	l.mu.Unlock()
	q := l.take(nil) // also wakes Enqueue calls waiting for room
	// With stream management, what the peer never acknowledged comes
	// first: it was written before what is still queued.
	var unacked []*batch
	skip := 0
	if l.sm != nil {
		unacked, skip = l.sm.takeAll()
	}
	n := -skip
	for _, b := range unacked {
		n += len(b.recs)
	}
	for _, b := range q {
		n += len(b.recs)
	}
	// settle hands what the link still held back to the router, in order.
	settle := func(f routing.Fate, err error) {
		for i, b := range unacked {
			sts := b.stanzas()
			if i == 0 {
				sts = sts[skip:]
			}
			l.s.Router.Settle(f, l.pair, sts, err)
			b.release()
		}
		for _, b := range q {
			l.s.Router.Settle(f, l.pair, b.stanzas(), err)
			b.release()
		}
	}
	if wasUp && l.sm != nil {
		// The requests the peer acknowledged are its to answer; those it
		// did not are routed again below and tracked anew by the link
		// that takes them: nothing is left to answer here, and it is done
		// before they are routed again.
		l.s.Router.Settle(routing.Down, l.pair, nil, nil)
	} else if wasUp {
		// IQ requests written on the stream and still unanswered get an
		// error if it died (RFC 6120 §8.2.3); after an idle close or a
		// shutdown they are only forgotten.
		down := err
		if errors.Is(err, errIdle) {
			down = nil
		}
		defer l.s.Router.Settle(routing.Down, l.pair, nil, down)
	}

	var de *routing.DeliveryError
	switch {
	case isOperatorClose(err):
		l.log.Info("outbound stream closed by the operator", "bounced", n)
		settle(routing.Failed, routing.Timeout(err))
	case errors.As(err, &de):
		l.log.Warn("outbound stream failed", "err", err, "bounced", n)
		settle(routing.Failed, err)
	case errors.Is(err, ErrServerClosed):
		settle(routing.Failed, routing.Timeout(errors.New("the relay is shutting down")))
	default:
		var se stream.Error
		if errors.As(err, &se) && se.Err == stream.PolicyViolation.Err {
			settle(routing.Failed, &routing.DeliveryError{Condition: stanza.NotAllowed, Err: err})
			break
		}
		if err != nil && !errors.Is(err, errIdle) {
			l.log.Info("outbound stream closed", "err", err)
		} else {
			l.log.Debug("outbound stream closed", "reason", err)
		}
		settle(routing.Retired, nil)
	}
}
