package s2s

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
)

// Outbound multiplexing ("piggybacking", XEP-0220 §4.3). The pairs of
// several internal domains towards one remote domain share one
// authenticated outbound stream: the link whose stream came up first (the
// carrier) writes, on its own writer, what the other pairs' links (its
// riders) hold. A rider is still a link of its own — its queue, its
// routing.Settle reports, its breaker outcome, its pending IQs, its
// admission by the policy — only its stream is not.
//
//   - Only domains that authenticate by dialback anyway ride: one with a
//     certificate of its own (cert_file) opens its own stream, so that its
//     peer can authenticate it by SASL EXTERNAL; multiplexing never lowers
//     how a domain is authenticated to its peer. Its stream may carry the
//     others.
//   - A new link towards a remote domain that has a carrier (up, or being
//     set up: the link waits for it) asks the policy about its pair as for
//     a new stream to that same peer (judgePeer: the certificate the peer
//     presented was checked for the remote domain), then has the carrier
//     send <db:result from='its domain' to='remote'/> on the stream. SASL
//     EXTERNAL authenticated only the domain of the stream header, so the
//     other domains always go by dialback (XEP-0178 §3, XEP-0220 §4.3).
//     Prosody (0.12, 13: mod_dialback answers db:result on an
//     authenticated s2sin session and marks the host authenticated) and
//     ejabberd (23.01, 24.12: mod_s2s_dialback hooks
//     s2s_in_authenticated_packet and adds the domain to auth_domains)
//     accept it.
//   - type='valid': the rider joins; the carrier's writer takes its queue
//     after each wake-up, in the same pass as its own. type='error' or
//     'invalid', no answer within limits.negotiation_timeout, or no
//     dialback on offer: the link opens a stream of its own, as without
//     multiplexing, and the relay leaves that remote domain alone for
//     muxRefusalMemory.
//   - With XEP-0198 the peer counts every stanza of the stream: the
//     stream keeps the order in which the pairs' stanzas were written
//     (runs) and hands each pair the part of an acknowledgement that is
//     its own.
//   - The stream is idle when all its pairs are: the riders' writes reset
//     the carrier's idle timer. When it ends, every rider ends with the
//     carrier's reason, and each routes again or bounces what it held or
//     had not had acknowledged, like a link whose stream died. A rider
//     that is stopped (its domain's policy withdrawn by a reload, the
//     operator) leaves the stream to the other pairs: the carrier's writer
//     lets it go between two writes.
//
// Only links of the federation face multiplex: towards the organisation's
// own servers the relay speaks as many remote domains, and those links
// have their route's gate.

// muxRefusalMemory is how long the relay opens a stream per pair towards a
// remote domain that refused a second domain on a stream.
const muxRefusalMemory = time.Hour

var (
	// errMuxRefused: the peer would not take another domain on the
	// stream (remembered for the remote domain).
	errMuxRefused = errors.New("another domain refused on the stream")
	// errMuxUnavailable: the stream could not take the pair now (it
	// ended meanwhile); nothing is remembered.
	errMuxUnavailable = errors.New("the stream cannot take another domain")
)

// muxTable is the server's multiplexing state: per remote domain, the link
// whose stream new pairs ride (or wait for while it is set up), and the
// remote domains that refused.
type muxTable struct {
	mu       sync.Mutex
	carriers map[string]*carrierSlot
	refused  *lru.Cache[string, time.Time] // until when
}

// carrierSlot is the carrier of a remote domain.
type carrierSlot struct {
	l *link
	// ready is closed when l is up (ms set) or will not be (ms nil). It is
	// made for the first link that waits (claim), which is rare: a link
	// that carries no rider holds no channel for it (issue 11). Both are
	// guarded by the table's mutex until ready is closed.
	ready   chan struct{}
	settled bool // l is up or will not be
	ms      *muxStream
}

// closedChan is the ready of a slot that had settled before a link waited
// for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// settle records that the slot's link is up (ms set) or will not be, and
// wakes the links waiting for it. t.mu must be held.
func (sl *carrierSlot) settle() {
	sl.settled = true
	if sl.ready != nil {
		close(sl.ready)
	}
}

// ended reports whether the slot's stream will carry nothing more. t.mu
// must be held.
func (sl *carrierSlot) ended() bool {
	if !sl.settled {
		return false
	}
	if sl.ms == nil {
		return true
	}
	select {
	case <-sl.ms.done:
		return true
	default:
		return false
	}
}

// claim returns the slot of the stream l's pair may ride (if it may ride
// one), or nil when l is to open a stream of its own; then l holds the slot
// of its remote domain if there was none, and other pairs will ride its
// stream.
func (t *muxTable) claim(l *link, mayRide bool) *carrierSlot {
	remote := l.pair.To
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refusedNow(remote) {
		return nil
	}
	if sl := t.carriers[remote]; sl != nil && sl.l != l && !sl.ended() {
		if !mayRide {
			return nil
		}
		if sl.ready == nil {
			// Set once, here, before any link reads it: ride waits on
			// it without the lock.
			if sl.settled {
				sl.ready = closedChan
			} else {
				sl.ready = make(chan struct{})
			}
		}
		return sl
	}
	if t.carriers == nil {
		t.carriers = map[string]*carrierSlot{}
	}
	t.carriers[remote] = &carrierSlot{l: l}
	return nil
}

// up makes the stream o, which l has just authenticated, the shared stream
// of l's remote domain if l holds the slot, and returns it; nil otherwise.
func (t *muxTable) up(l *link, o *outStream) *muxStream {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := t.carriers[l.pair.To]
	if sl == nil || sl.l != l {
		return nil
	}
	ms := &muxStream{s: l.s, carrier: l, o: o, done: make(chan struct{})}
	sl.ms = ms
	sl.settle()
	return ms
}

// forget gives up l's slot, if it holds one: it left the link table, its
// setup failed or its stream ended. Links waiting for it open their own.
func (t *muxTable) forget(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := t.carriers[l.pair.To]
	if sl == nil || sl.l != l {
		return
	}
	delete(t.carriers, l.pair.To)
	if !sl.settled {
		sl.settle()
	}
}

// refuse remembers that remote refused multiplexing.
func (t *muxTable) refuse(remote string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refused == nil {
		t.refused, _ = lru.New[string, time.Time](1 << 12)
	}
	t.refused.Add(remote, time.Now().Add(muxRefusalMemory))
}

// refusedNow reports whether remote refused multiplexing recently. t.mu is
// held.
func (t *muxTable) refusedNow(remote string) bool {
	if t.refused == nil {
		return false
	}
	until, ok := t.refused.Get(remote)
	if ok && time.Now().After(until) {
		t.refused.Remove(remote)
		return false
	}
	return ok
}

// muxStream is the shared part of a carrier's stream: the riders, the
// dialback requests that wait to be written and answered, and, with
// XEP-0198, the order of the stanzas written.
type muxStream struct {
	s       *Server
	carrier *link
	o       *outStream
	done    chan struct{} // closed when the stream has ended; err says why
	err     error

	dbmu sync.Mutex // guards o.db once the stream is up

	mu      sync.Mutex
	ended   bool
	riders  []*link
	leaving []leave
	control []byte                                   // dialback requests for the writer
	waits   map[dialback.Pair]chan dialback.Decision // nil while none waits (issue 11)
	// XEP-0198: who wrote the stanzas not yet acknowledged, in order, and
	// how many; the peer's last count for the stream; the stanzas being
	// written; a count that came before the writer recorded what it
	// acknowledges (ahead, when early).
	runs     []smRun
	n        int
	h        uint32
	inflight int
	early    bool
	ahead    uint32

	wr   []*link // the writer's copy of riders (writer only)
	acks []smRun // the reader's (reader only)
}

// leave is a rider the writer is to let go.
type leave struct {
	l    *link
	gone chan struct{}
}

// smRun is a run of stanzas one pair wrote on a shared stream.
type smRun struct {
	l *link
	n int
}

// ride carries the link's pair on the stream of another pair towards the
// same remote domain, when there is one up or being set up. It reports
// false when the link is to open a stream of its own: multiplexing is off
// or refused, or that stream did not come up. When it rode, err is why the
// ride ended, as serve's.
func (l *link) ride() (bool, error) {
	s := l.s
	if !s.Limits.Multiplex || l.gate != nil || s.faceOf(l.pair) != policy.Federation {
		return false, nil
	}
	// A domain with a certificate of its own (cert_file) authenticates by
	// SASL EXTERNAL where the peer offers it: riding another domain's
	// stream would leave the peer only dialback for it. It opens its own
	// stream, which others may ride.
	slot := s.mux.claim(l, !s.ExternalDomains[l.pair.From])
	if slot == nil {
		return false, nil
	}
	started := time.Now()
	wait := time.NewTimer(s.Limits.ConnectTimeout + s.Limits.NegotiationTimeout)
	defer wait.Stop()
	select {
	case <-slot.ready:
	case <-wait.C:
		return false, nil
	case <-s.ctx.Done():
		return true, routing.Timeout(ErrServerClosed)
	}
	ms := slot.ms
	if ms == nil {
		return false, nil // its setup failed: this one tries its own
	}
	err := l.join(ms)
	switch {
	case errors.Is(err, errMuxRefused):
		s.mux.refuse(l.pair.To)
		s.stats.MultiplexRefused.Add(1)
		l.log.Info("the peer does not take another domain on a stream; opening one for this pair", "err", err,
			"for", muxRefusalMemory)
		return false, nil
	case errors.Is(err, errMuxUnavailable):
		l.log.Debug("not multiplexed", "err", err)
		return false, nil
	}
	l.reportOutcome(err)
	s.metrics.setup(policy.Federation, started, err)
	if err != nil {
		return true, err
	}
	s.stats.Multiplexed.Add(1)
	l.log.Info("outbound pair carried on a shared stream", "stream_of", ms.carrier.pair.From,
		"took", time.Since(started).Round(time.Millisecond))
	return true, l.carried(ms)
}

// join authenticates the link's pair on ms and makes the link one of its
// riders. The policy judges the pair as it judges a new stream to the same
// peer; a refusal is a setup failure, as it would be for a stream of its
// own.
func (l *link) join(ms *muxStream) error {
	o := ms.o
	if o.feats != nil && !o.feats.Dialback {
		return fmt.Errorf("%w: the peer offers no dialback on the stream", errMuxRefused)
	}
	if err := l.s.judgePeer(l.s.Router.Policy(), o, l.pair.From); err != nil {
		return routing.Timeout(err)
	}
	answer, err := ms.request(l.pair)
	if err != nil {
		return err
	}
	if answer != nil {
		timer := time.NewTimer(l.s.Limits.NegotiationTimeout)
		defer timer.Stop()
		select {
		case d := <-answer:
			if d.Outcome != dialback.Authorized {
				what := d.Answer.Type.String()
				if d.Answer.Condition != "" {
					what += " (" + string(d.Answer.Condition) + ")"
				}
				if transientRefusal(d.Answer) {
					// The peer could not check the key now (ejabberd
					// answers so when its verification connection
					// fails): not a refusal of multiplexing.
					return fmt.Errorf("%w: db:result from %s answered %s", errMuxUnavailable, l.pair.From, what)
				}
				return fmt.Errorf("%w: db:result from %s answered %s", errMuxRefused, l.pair.From, what)
			}
		case <-ms.done:
			var pe *PeerStreamError
			if errors.As(ms.err, &pe) {
				// The peer closed the stream while it had our request:
				// perhaps because of it.
				return fmt.Errorf("%w: the peer closed the stream (%v) before answering", errMuxRefused, ms.err)
			}
			return fmt.Errorf("%w: the stream ended", errMuxUnavailable)
		case <-timer.C:
			return fmt.Errorf("%w: db:result from %s unanswered after %s", errMuxRefused, l.pair.From, l.s.Limits.NegotiationTimeout)
		case <-l.s.ctx.Done():
			return routing.Timeout(ErrServerClosed)
		}
	}
	l.mu.Lock()
	l.up = true
	l.out, l.mux, l.auth = o, ms, policy.AuthDialback
	if o.feats != nil {
		l.peerMax = o.feats.MaxBytes
	}
	if o.sm {
		l.sm = &smOut{shared: ms, owner: l}
	}
	l.mu.Unlock()
	l.refuseOversized()
	ms.mu.Lock()
	if !ms.ended {
		ms.riders = append(ms.riders, l)
	}
	ms.mu.Unlock()
	ms.carrier.signal() // what waits in our queue goes now
	return nil
}

// transientRefusal reports whether a db:result answer of type='error'
// says the peer could not verify the key at the moment (its connection to
// the Authoritative server failed, it is busy) rather than that it does
// not take the domain on the stream.
func transientRefusal(answer dialback.Element) bool {
	if answer.Type != dialback.TypeError {
		return false
	}
	switch answer.Condition {
	case stanza.RemoteServerNotFound, stanza.RemoteServerTimeout, stanza.ResourceConstraint,
		stanza.InternalServerError, dialback.RemoteConnectionFailed:
		return true
	}
	return false
}

// request has the carrier write a db:result for pair on the stream and
// returns where its answer will come; nil when the pair is already
// authorized on the stream (it rode it before).
func (ms *muxStream) request(pair routing.Pair) (<-chan dialback.Decision, error) {
	ms.dbmu.Lock()
	if ms.o.db == nil {
		// A link that is up drops the dialback state of its
		// authentication (idle memory); the first pair to ride makes
		// the stream's anew.
		ms.o.db = ms.o.newDialback()
	}
	req, err := ms.o.db.SendResult(pair.From, pair.To)
	ms.dbmu.Unlock()
	if errors.Is(err, dialback.ErrAuthorized) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMuxUnavailable, err)
	}
	answer := make(chan dialback.Decision, 1)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.ended {
		return nil, fmt.Errorf("%w: the stream ended", errMuxUnavailable)
	}
	if ms.waits == nil {
		ms.waits = map[dialback.Pair]chan dialback.Decision{}
	}
	ms.waits[dialback.Pair{From: req.From, To: req.To}] = answer
	ms.control = req.Append(ms.control)
	ms.carrier.signal()
	return answer, nil
}

// answer takes the peer's answer to a db:result on the carrier's stream
// (reader only).
func (ms *muxStream) answer(raw []byte) error {
	e, err := dialback.Parse(raw)
	if err != nil {
		ms.mu.Lock()
		asked := len(ms.waits) > 0
		ms.mu.Unlock()
		if !asked {
			// Nothing asked: ignored, as on a stream that does not
			// multiplex.
			ms.s.stats.DialbackIgnored.Add(1)
			return nil
		}
		return err
	}
	ms.dbmu.Lock()
	var d dialback.Decision
	if ms.o.db != nil { // nil: no pair asked on this stream
		d = ms.o.db.Handle(e)
	}
	ms.dbmu.Unlock()
	if d.Action != dialback.Settle {
		ms.s.stats.DialbackIgnored.Add(1)
		return nil
	}
	ms.s.metrics.dialbackAnswered(d.Outcome)
	ms.mu.Lock()
	answer := ms.waits[d.Pair]
	delete(ms.waits, d.Pair)
	if len(ms.waits) == 0 {
		ms.waits = nil // its table would stay as big as it once was
	}
	ms.mu.Unlock()
	if answer != nil {
		answer <- d
	}
	return nil
}

// carried is the rider's owner while it rides ms: it passes the link's
// wake-ups on to the carrier's writer, and returns when the stream ends,
// with its reason, or when the link is stopped: then it leaves the stream
// to the other pairs first.
func (l *link) carried(ms *muxStream) error {
	for {
		l.mu.Lock()
		stopErr := l.stopErr
		l.mu.Unlock()
		if stopErr != nil {
			gone := ms.leave(l)
			select {
			case <-gone:
			case <-ms.done:
			}
			return stopErr
		}
		select {
		case <-l.wake:
			ms.carrier.signal()
		case <-ms.done:
			return l.rideEnded(ms)
		}
	}
}

// errCarrierClosed ends a rider whose carrier's own pair was closed by the
// policy or the operator: its stanzas go again over a stream of its own,
// where its pair is judged anew.
var errCarrierClosed = errors.New("the shared stream was closed for the pair that opened it")

// rideEnded is why the ride on ms ended, for finish: the stream's reason,
// or the link's own if it was stopped too; a close that concerned only the
// carrier's pair (the policy, the operator) is not the rider's.
func (l *link) rideEnded(ms *muxStream) error {
	l.mu.Lock()
	stopErr := l.stopErr
	l.mu.Unlock()
	if stopErr != nil {
		return stopErr
	}
	var se stream.Error
	if isOperatorClose(ms.err) || errors.As(ms.err, &se) && se.Err == stream.PolicyViolation.Err {
		return fmt.Errorf("%w (%s → %s: %v)", errCarrierClosed, ms.carrier.pair.From, ms.carrier.pair.To, ms.err)
	}
	return ms.err
}

// leave asks the carrier's writer to let l go; gone is closed once it
// writes nothing more of l's.
func (ms *muxStream) leave(l *link) <-chan struct{} {
	gone := make(chan struct{})
	ms.mu.Lock()
	ms.leaving = append(ms.leaving, leave{l, gone})
	ms.mu.Unlock()
	ms.carrier.signal()
	return gone
}

// end tells the riders, and the links waiting for answers, that the stream
// has ended with err. The carrier's writer and reader have returned.
func (ms *muxStream) end(err error) {
	ms.s.mux.forget(ms.carrier)
	ms.mu.Lock()
	ms.ended, ms.err = true, err
	ms.riders, ms.waits = nil, nil
	for _, lv := range ms.leaving {
		close(lv.gone)
	}
	ms.leaving = nil
	ms.mu.Unlock()
	close(ms.done)
}

// tend does the stream's chores between two writes (carrier's writer
// only): the dialback requests of pairs that join, and the riders that
// leave.
func (ms *muxStream) tend(o *outStream) error {
	ms.mu.Lock()
	ctl := ms.control
	ms.control = nil
	for _, lv := range ms.leaving {
		ms.riders = slices.DeleteFunc(ms.riders, func(r *link) bool { return r == lv.l })
		close(lv.gone)
	}
	ms.leaving = ms.leaving[:0]
	ms.mu.Unlock()
	if len(ctl) == 0 {
		return nil
	}
	o.raw.SetWriteDeadline(time.Now().Add(ms.s.Limits.WriteTimeout))
	o.w.WriteRaw(ctl)
	if err := o.w.Flush(); err != nil {
		return routing.Timeout(fmt.Errorf("writing to %s: %w", o.remote, err))
	}
	return nil
}

// writeRiders writes what the riders hold, each pair's batches with its
// own accounting (link.write), and reports whether it wrote anything
// (carrier's writer only).
func (ms *muxStream) writeRiders(o *outStream) (bool, error) {
	ms.mu.Lock()
	ms.wr = append(ms.wr[:0], ms.riders...)
	ms.mu.Unlock()
	defer clear(ms.wr)
	wrote := false
	for _, r := range ms.wr {
		if r.sm != nil && r.sm.full(ms.s.Limits.QueueBytes, ms.s.Limits.QueueStanzas) {
			// Its peer has not acknowledged as much as a link may hold:
			// to its feeders the pair waits on its peer.
			if r.writing.Load() == 0 {
				r.writing.Store(time.Now().UnixNano())
			}
			continue
		}
		q := r.take(r.wspare)
		r.writing.Store(0)
		if len(q) == 0 {
			continue
		}
		err := r.write(o, q)
		clear(q)
		r.wspare = q[:0]
		if err != nil {
			return wrote, err
		}
		wrote = true
		r.mu.Lock()
		theirs := r.theirs
		r.mu.Unlock()
		if theirs {
			// The stream carries others' stanzas: it idles as a stream
			// that does (link.idleTimeout).
			ms.carrier.mu.Lock()
			ms.carrier.theirs = true
			ms.carrier.mu.Unlock()
		}
	}
	return wrote, nil
}

// unacked returns the stanzas of the whole stream that wait for their
// acknowledgement, and when the oldest request for one went out.
func (l *link) unacked() (int, time.Time) {
	n, asked := l.sm.waiting()
	if l.mux == nil {
		return n, asked
	}
	l.mux.mu.Lock()
	l.mux.wr = append(l.mux.wr[:0], l.mux.riders...)
	riders := l.mux.wr
	l.mux.mu.Unlock()
	for _, r := range riders {
		if r.sm == nil {
			continue
		}
		rn, ra := r.sm.waiting()
		n += rn
		if rn > 0 && (asked.IsZero() || ra.Before(asked)) {
			asked = ra
		}
	}
	clear(riders)
	return n, asked
}

// writing tells the stream that the writer is about to write the batches
// of q (XEP-0198): until wrote records them, a count from the peer that
// includes them is early, not wrong.
func (ms *muxStream) writing(q []*batch) {
	n := 0
	for _, b := range q {
		n += len(b.recs)
	}
	ms.mu.Lock()
	ms.inflight = n
	ms.mu.Unlock()
}

// wrote records that l wrote n stanzas on the stream (XEP-0198), after
// those written before, and settles a count that came early for them.
func (ms *muxStream) wrote(l *link, n int) {
	ms.mu.Lock()
	ms.inflight = 0
	if n > 0 {
		if k := len(ms.runs); k > 0 && ms.runs[k-1].l == l {
			ms.runs[k-1].n += n
		} else {
			ms.runs = append(ms.runs, smRun{l, n})
		}
		ms.n += n
	}
	var acks []smRun
	if ms.early && ms.ahead-ms.h <= uint32(ms.n) {
		ms.early = false
		acks = ms.pop(ms.ahead, nil)
	}
	ms.mu.Unlock()
	for _, a := range acks {
		a.l.ackCount(uint32(a.n))
	}
}

// handleAck settles what the peer's count h for the whole stream
// acknowledges, pair by pair (carrier's reader only). A count that
// includes stanzas being written, not recorded yet, waits for them.
func (ms *muxStream) handleAck(h uint32) error {
	ms.mu.Lock()
	newly := h - ms.h // modulo 2^32
	if newly > uint32(ms.n+ms.inflight) {
		n := ms.n + ms.inflight
		ms.mu.Unlock()
		return withText(stream.UndefinedCondition, "handled-count-too-high: h='%d' acknowledges more than the %d stanzas waiting", h, n)
	}
	if newly > uint32(ms.n) {
		ms.early, ms.ahead = true, h
		ms.mu.Unlock()
		return nil
	}
	ms.early = false
	ms.acks = ms.pop(h, ms.acks[:0])
	ms.mu.Unlock()
	for _, a := range ms.acks {
		a.l.ackCount(uint32(a.n))
	}
	clear(ms.acks)
	ms.carrier.signal() // the writer may be waiting for room, or to close
	return nil
}

// pop takes what the count h acknowledges off the runs and appends it,
// pair by pair, to acks. ms.mu is held; h is at most ms.n ahead.
func (ms *muxStream) pop(h uint32, acks []smRun) []smRun {
	newly := int(h - ms.h)
	ms.h = h
	ms.n -= newly
	for left := newly; left > 0; {
		r := &ms.runs[0]
		k := min(left, r.n)
		acks = append(acks, smRun{r.l, k})
		r.n -= k
		left -= k
		if r.n == 0 {
			ms.runs[0] = smRun{}
			ms.runs = ms.runs[1:]
		}
	}
	if ms.n == 0 {
		ms.runs = ms.runs[:0:0]
	}
	return acks
}

// ackCount settles the link's next n stanzas as acknowledged. A pair that
// has left the stream has handed its unacknowledged stanzas back to the
// router already: the peer's count for them changes nothing.
func (l *link) ackCount(n uint32) {
	l.sm.mu.Lock()
	h := l.sm.h + n
	l.sm.mu.Unlock()
	runs, err := l.sm.ack(h, nil)
	if err != nil {
		return
	}
	l.settleAcked(runs)
	if len(runs) > 0 {
		l.signal()
	}
}

// multiplexReply returns the state to route a stanza from remote to local
// with, that came on this federation-face stream although the stream is
// authorized for another of the relay's domains: Prosody (0.12 and 13)
// sends what the server itself says to a domain that rode the relay's
// shared stream (its IQ results, its errors) on its own stream to the
// first domain of that shared stream, because mod_s2s routes an inbound
// session's replies to the session's header 'from', not to the stanza's
// 'to'. It is accepted only while the relay's link (local → remote) rides
// a shared stream whose first domain is the one this stream is authorized
// for with remote as sender: the sender is authenticated on this stream,
// and the relay serves local. nil otherwise (host-unknown, as before).
func (c *inConn) multiplexReply(remote, local string) *pairState {
	if c.face != policy.Federation {
		return nil
	}
	c.s.lmu.RLock()
	l := c.s.links[routing.Pair{From: local, To: remote}]
	c.s.lmu.RUnlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	ms := l.mux
	l.mu.Unlock()
	if ms == nil || ms.carrier == l {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.pairs[dialback.Pair{From: remote, To: ms.carrier.pair.From}]
	if first == nil {
		return nil
	}
	return &pairState{auth: first.auth}
}

// writingSince is when the writer of the link's stream began its current
// write (Unix ns), 0 outside writes: a rider's stream is written by its
// carrier's writer, which may be stuck on the peer with another pair's
// batch. l.mu is held.
func (l *link) writingSince() int64 {
	ws := l.writing.Load()
	if ws == 0 && l.mux != nil && l.mux.carrier != l {
		ws = l.mux.carrier.writing.Load()
	}
	return ws
}

// isRider reports whether the link rides another pair's stream.
func (l *link) isRider() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mux != nil && l.mux.carrier != l
}

// addRiders adds to a carrier's description the pairs that ride its
// stream: their local domains, what they wrote and hold.
func (l *link) addRiders(si *StreamInfo) {
	l.mu.Lock()
	ms := l.mux
	l.mu.Unlock()
	if ms == nil || ms.carrier != l {
		return
	}
	ms.mu.Lock()
	riders := slices.Clone(ms.riders)
	ms.mu.Unlock()
	for _, r := range riders {
		si.Local = append(si.Local, r.pair.From)
		si.StanzasOut += r.written.Load()
		si.BytesOut += r.bytesOut.Load()
		r.mu.Lock()
		si.Queue += r.qn
		si.QueueBytes += r.qbytes
		r.mu.Unlock()
		if r.sm != nil {
			r.sm.mu.Lock()
			si.Acknowledged += r.sm.acked
			si.Unacknowledged += r.sm.n
			r.sm.mu.Unlock()
		}
	}
	slices.Sort(si.Local)
}
