package routing

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

// Link is an outbound stream for one domain pair, established or being set
// up. Package s2s implements it.
type Link interface {
	// Enqueue copies st's bytes (st.Bytes) and facts into the link, which
	// writes them after everything enqueued before. It fails with
	// ErrQueueFull when the link's bounds are reached and ErrClosed when it
	// is going away. Once Enqueue succeeds the link reports the copy's fate
	// through Router.Settle. It keeps nothing of st itself. With st.Defer
	// the link may leave its writer asleep until Wake.
	Enqueue(st *Stanza) error
	// Wake makes the link write what it holds.
	Wake()
}

// Dialer finds or opens outbound links. Package s2s implements it.
type Dialer interface {
	// Link returns the link for pair. When there is none it calls
	// admit(pair.To) (the destination's circuit breaker) and, if admitted,
	// starts a new link that reports the outcome of its connection attempt
	// through report: nil once authenticated, a *DeliveryError otherwise.
	// Link and admit's refusal are atomic per pair: concurrent callers share
	// one link. admit is the same function value on every call, so that
	// finding an existing link costs no allocation.
	Link(pair Pair, admit func(to string) (report func(error), err error)) (Link, error)
}

// Bouncer writes the error stanza answering st (RFC 6120 §8.3): same kind,
// type='error', from and to swapped, same id, with e's condition, type and
// text. It reports false when st must not be answered. Package s2s/wire
// provides it.
type Bouncer func(dst []byte, st *Stanza, e stanza.Error) ([]byte, bool)

// Router routes stanzas between the two faces. It enforces the routing rules
// of RFC 6120 §10 for a relay (never an open relay, no loops), applies the
// policy, keeps a circuit breaker per destination domain, and bounces what
// cannot be delivered. It is safe for concurrent use; configuration that may
// be reloaded is swapped atomically.
type Router struct {
	dialer   Dialer
	bouncer  Bouncer
	audit    func(policy.Record)
	now      func() time.Time
	onBounce func(*Stanza, stanza.Error)

	table    atomic.Pointer[Table]
	policy   atomic.Pointer[policy.Policy]
	breakCfg atomic.Pointer[config.Breaker]
	limiter  *policy.Limiter

	bmu      sync.Mutex
	breakers *lru.Cache[string, *breaker]

	iqs pendingIQs

	admit func(to string) (func(error), error) // r.admitTo, made once

	stats Stats
}

// Options are what a Router is built from.
type Options struct {
	Table   *Table
	Policy  *policy.Policy
	Breaker config.Breaker
	Dialer  Dialer
	Bouncer Bouncer
	// Audit receives one record per refusal; nil discards them.
	Audit func(policy.Record)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OnBounce, if not nil, is told of every stanza the router answers with
	// an error, with the error, just after the bounce is routed: for logs,
	// metrics and tests (the time from st.Received to the bounce). It gets
	// the full error, also when the sender in the federation was given
	// only its public form (see publicError).
	OnBounce func(st *Stanza, e stanza.Error)
	// MaxBreakers bounds the breakers kept (one per destination domain);
	// the least recently used is forgotten beyond it. Zero means 65536.
	MaxBreakers int
}

// NewRouter returns a Router.
func NewRouter(o Options) *Router {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Audit == nil {
		o.Audit = func(policy.Record) {}
	}
	if o.MaxBreakers <= 0 {
		o.MaxBreakers = 1 << 16
	}
	r := &Router{dialer: o.Dialer, bouncer: o.Bouncer, audit: o.Audit, now: o.Now,
		onBounce: o.OnBounce, limiter: policy.NewLimiter(0)}
	r.breakers, _ = lru.New[string, *breaker](o.MaxBreakers)
	r.table.Store(o.Table)
	r.policy.Store(o.Policy)
	b := o.Breaker
	r.breakCfg.Store(&b)
	r.admit = r.admitTo
	return r
}

// admitTo asks the breaker of a destination domain whether a connection
// attempt may start (Dialer.Link's admit).
func (r *Router) admitTo(to string) (func(error), error) { return r.breaker(to).allow() }

// Reload swaps the parts of the configuration that may change at run time.
// Breakers keep their state. A closed breaker runs with the new settings,
// and those of its domain's kind in the new table (internal or remote), from
// its next connection attempt on, keeping its count of failures; an open one
// from the end of its open period.
func (r *Router) Reload(t *Table, p *policy.Policy, b config.Breaker) {
	r.table.Store(t)
	r.policy.Store(p)
	r.breakCfg.Store(&b)
}

// Table returns the current domain table.
func (r *Router) Table() *Table { return r.table.Load() }

// Policy returns the current policy.
func (r *Router) Policy() *policy.Policy { return r.policy.Load() }

// Stats returns the router's counters.
func (r *Router) Stats() *Stats { return &r.stats }

// Route takes a stanza read from an authenticated stream (or a stanza the
// relay made: a bounce, an answer with st.Answer) and sends it on its way:
// to the outbound link of its domain pair, or back to its sender as an
// error. It never blocks on the network; it may wait a little for room in a
// busy link, no longer than st.MaxWait while that link's peer is not
// reading. Route keeps nothing of st once it returns.
func (r *Router) Route(st *Stanza) {
	if st.Answer {
		st.Own = true
		r.stats.Answered.AddAt(st.Shard, 1)
	}
	if !st.Own {
		r.stats.Accepted.AddAt(st.Shard, 1)
		r.stats.Traffic.in(st)
	}
	if isAnswer(st) {
		r.iqs.answered(st)
	}
	t := r.table.Load()
	var fromIn, toIn bool
	if v := st.Via; v != nil && v.table == t {
		fromIn, toIn = v.fromIn, v.toIn // the pair's last stanza, under the same table
	} else {
		fromIn, toIn = t.IsInternal(st.FromDomain), t.IsInternal(st.ToDomain)
		if v != nil {
			v.table, v.fromIn, v.toIn = t, fromIn, toIn
			v.remote = policy.Remote{} // the remote domain may be the other one now
		}
	}
	var dir policy.Direction
	var remote string
	switch {
	case fromIn && !toIn:
		dir, remote = policy.Out, st.ToDomain
	case !fromIn && toIn:
		dir, remote = policy.In, st.FromDomain
	default:
		// Internal to internal would loop through the federation (RFC 6120
		// §10.5); remote to remote would make the relay an open relay.
		// The stream layer refuses both before a stanza gets here.
		r.refuse(st, "routing: "+openRelayRule(fromIn), stanza.Error{Type: stanza.Cancel,
			Condition: stanza.NotAllowed, Text: map[string]string{"": "the relay does not route this pair"}})
		return
	}
	if !st.Own && ((dir == policy.In) != (st.Face == policy.Federation)) {
		r.refuse(st, "routing: stanza from the wrong face", stanza.Error{Type: stanza.Cancel,
			Condition: stanza.NotAllowed, Text: map[string]string{"": "the relay does not route this pair"}})
		return
	}
	if !st.Own {
		p := r.policy.Load()
		size := len(st.Raw)
		if st.Oversize > 0 {
			size = st.Oversize
		}
		ps := policy.Stanza{Kind: st.Kind, Type: st.Type, From: st.From, Size: size}
		var d policy.Decision
		if v := st.Via; v != nil {
			// The pair's remote domain, matched against the lists once
			// per policy rather than for each stanza.
			if !v.remote.Of(p) {
				v.remote = p.Remote(remote)
			}
			d = p.StanzaFor(&v.remote, dir, ps)
		} else {
			d = p.Stanza(remote, dir, ps)
		}
		if d.Allowed && st.Oversize > 0 {
			// Bigger than the stream's limit, which the policy's global
			// size limit is: cannot be allowed, but its bytes are gone
			// in any case.
			r.refuse(st, "limits.max_stanza_bytes", stanza.Error{Type: stanza.Modify, Condition: stanza.PolicyViolation})
			return
		}
		d = r.limiter.Limit(remote, dir, d, r.now)
		if !d.Allowed {
			local := st.ToDomain
			if dir == policy.Out {
				local = st.FromDomain
			}
			r.audit(d.Record(r.now(), st.Face, dir, local, remote, st.Kind))
			r.stats.Refused.AddAt(st.Shard, 1)
			if d.Send {
				r.bounceRule(st, d.StanzaError(), d.Rule)
			} else {
				r.drop(st)
			}
			return
		}
	}
	r.deliver(st)
}

// deliver hands st to the link of its pair: the one its stream cached in
// st.Via if that one still takes stanzas, else the Dialer's.
func (r *Router) deliver(st *Stanza) {
	if st.Via != nil && st.Via.Link != nil {
		err := st.Via.Link.Enqueue(st)
		if err == nil {
			return // the usual case, without errors.Is and its interface comparisons
		}
		if !errors.Is(err, ErrClosed) {
			r.fail(st, err)
			return
		}
		st.Via.Link = nil // retired: ask the Dialer for its successor
	}
	pair := Pair{From: st.FromDomain, To: st.ToDomain}
	var err error
	// A link found just as it retires refuses with ErrClosed; the next
	// lookup finds its successor (or starts one).
	for range 3 {
		var link Link
		if link, err = r.dialer.Link(pair, r.admit); err == nil {
			if err = link.Enqueue(st); err == nil && st.Via != nil {
				st.Via.Link = link
			}
		}
		if !errors.Is(err, ErrClosed) {
			break
		}
	}
	if err != nil {
		r.fail(st, err)
	}
}

// A Tally sums, as a link takes its stanzas, what Settle needs of them
// once they are written: how many are the relay's own, how many of each
// face and kind, and how many are IQ requests to track. A link that keeps
// one per batch settles it with SettleTally, which reads the records only
// when one is a request to track: the records stay in the cache of the
// goroutine that wrote them rather than cross to the writer's CPU and
// back (issue 11).
type Tally struct {
	traffic  trafficTally
	n, own   int64
	requests int
	shard    uint32 // the first stanza's
}

// Add counts st, a stanza the link took.
func (t *Tally) Add(st *Stanza) {
	if t.n == 0 {
		t.shard = st.Shard
	}
	t.n++
	if st.Own {
		t.own++
		return
	}
	t.traffic.add(st)
	if isRequest(st) {
		t.requests++
	}
}

// SettleTally is Settle with Sending or Written for a batch of stanzas
// (sts) that t counted as the link took them: it reads no record unless
// one is an IQ request to track. The other fates go through Settle.
func (r *Router) SettleTally(f Fate, pair Pair, sts []Stanza, t *Tally) {
	switch f {
	case Sending:
		if t.requests > 0 {
			r.Settle(Sending, pair, sts, nil)
		}
	case Written:
		if t.n > 0 {
			r.delivered(Written, t)
		}
	}
}

// delivered counts written (or acknowledged) stanzas.
func (r *Router) delivered(f Fate, t *Tally) {
	r.stats.Traffic.out(t.shard, &t.traffic)
	if theirs := t.n - t.own; theirs > 0 {
		r.stats.Delivered.AddAt(t.shard, theirs)
		if f == Acked {
			r.stats.Acknowledged.AddAt(t.shard, theirs)
		}
	}
	if t.own > 0 {
		r.stats.BouncesDelivered.AddAt(t.shard, t.own)
	}
}

// maxAttempts bounds how many links a stanza may be handed to: a link that
// retires (idle, closed by its peer) with stanzas queued hands them to a new
// one, but a peer that keeps accepting and dropping streams must not keep a
// stanza circling.
const maxAttempts = 3

// Settle is how a link reports the fate of stanzas it had taken from
// Link.Enqueue (or, with Down, of the link itself), in the order it took
// them; err says why for Failed and Down. Settle keeps nothing of sts
// (their ids are lent, as a Stanza's are: it copies what it keeps).
func (r *Router) Settle(f Fate, pair Pair, sts []Stanza, err error) {
	switch f {
	case Sending:
		for i := range sts {
			if isRequest(&sts[i]) && !sts[i].Own {
				r.iqs.add(&sts[i], r.now())
			}
		}
	case Written, Acked:
		if len(sts) == 0 {
			return
		}
		var t Tally
		for i := range sts {
			t.Add(&sts[i])
		}
		r.delivered(f, &t)
	case Failed:
		r.undelivered(err, sts)
	case Retired:
		r.reroute(sts)
	case Down:
		r.linkDown(pair, err)
	}
}

// reroute takes back stanzas a link accepted but retired before writing (it
// went idle, or its peer closed a working stream) and delivers them over a
// new link, in order. They are not counted as accepted again.
func (r *Router) reroute(sts []Stanza) {
	for i := range sts {
		st := &sts[i]
		st.Via, st.MaxWait = nil, 0
		st.Attempts++
		if st.Attempts >= maxAttempts {
			r.fail(st, Timeout(errors.New("the stream to "+st.ToDomain+" kept closing before delivery")))
			continue
		}
		r.deliver(st)
	}
}

func openRelayRule(fromInternal bool) string {
	if fromInternal {
		return "internal domain to internal domain (RFC 6120 §10.5)"
	}
	return "remote domain to remote domain (open relay)"
}

// undelivered takes back stanzas a link could not write, with the reason,
// and bounces them.
func (r *Router) undelivered(err error, sts []Stanza) {
	for i := range sts {
		st := &sts[i]
		if isRequest(st) {
			r.iqs.forget(st) // it is bounced now, not when the link is down
		}
		r.fail(st, err)
	}
}

// Reachable records that a domain is evidently up (an inbound stream from it
// authenticated): its breaker closes.
func (r *Router) Reachable(domain string) {
	r.bmu.Lock()
	b, ok := r.breakers.Get(domain)
	r.bmu.Unlock()
	if ok {
		b.succeed()
	}
}

// breaker returns the breaker of a destination domain, creating it. Its
// settings are read from the current configuration and table whenever it
// makes a new gobreaker: an internal domain's breaker gets the internal
// periods (see settingsFor).
func (r *Router) breaker(domain string) *breaker {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	b, ok := r.breakers.Get(domain)
	if !ok {
		b = newBreaker(domain, func() breakerSettings {
			return settingsFor(r.breakCfg.Load(), r.table.Load().IsInternal(domain))
		})
		r.breakers.Add(domain, b)
	}
	return b
}

// fail bounces st for a delivery failure.
func (r *Router) fail(st *Stanza, err error) {
	var oe *OpenError
	if errors.As(err, &oe) {
		r.stats.BreakerBounces.AddAt(st.Shard, 1)
	}
	r.bounceRule(st, stanzaError(err), "")
}

// refuse records a stanza refused by a routing rule and answers it.
func (r *Router) refuse(st *Stanza, rule string, e stanza.Error) {
	r.stats.Refused.AddAt(st.Shard, 1)
	r.audit(policy.Record{Time: r.now(), Face: st.Face, From: st.FromDomain, To: st.ToDomain, Local: st.ToDomain, Remote: st.FromDomain,
		Kind: st.Kind, Rule: rule, Error: string(e.Condition), ErrorType: string(e.Type)})
	r.bounceRule(st, e, rule)
}

// bounce answers st with an error stanza routed back to its sender, unless
// st must not be answered (it is an error itself, an IQ result or error, or
// the bounce of a bounce): then st is dropped.
func (r *Router) bounce(st *Stanza, e stanza.Error) { r.bounceRule(st, e, "") }

// bounceRule is bounce for a refusal that rule decided ("" for a delivery
// failure).
func (r *Router) bounceRule(st *Stanza, e stanza.Error, rule string) {
	if st.Own {
		r.stats.BouncesDropped.AddAt(st.Shard, 1)
		return
	}
	raw, ok := r.bouncer(nil, st, publicError(st, e, r.policy.Load().Explain(), rule))
	if !ok {
		r.drop(st)
		return
	}
	r.stats.Bounced.AddAt(st.Shard, 1)
	r.stats.Bounces.add(st.Shard, e.Condition)
	r.Route(errorReply(st, raw))
	if r.onBounce != nil {
		cp := *st
		cp.ID = strings.Clone(st.ID) // lent: the hook may keep it
		r.onBounce(&cp, e)
	}
}

// publicError is what a sender in the federation learns of a failure: the
// condition and its type, with what policy.explain allows of the reason:
// nothing (none), a sentence that names nothing inside the organisation
// (brief: not the internal route, its addresses, the relay's own errors or
// the policy rule), or that sentence and the rule that refused (full).
// Delivery failures never say more than brief: their details are internal.
// The full reason goes to the logs, the audit trail and OnBounce. Senders
// on the internal face get e as it is.
func publicError(st *Stanza, e stanza.Error, ex policy.Explain, rule string) stanza.Error {
	// A size refusal names the size: the sender can act on it, and it says
	// nothing about the organisation.
	var sized string
	if e.Condition == stanza.PolicyViolation && e.Type == stanza.Modify && rule != "" {
		size := len(st.Raw)
		if st.Oversize > 0 {
			size = st.Oversize
		}
		sized = fmt.Sprintf("the stanza is %d bytes, larger than the relay of %s accepts", size, st.ToDomain)
		if st.Face != policy.Federation {
			sized = fmt.Sprintf("the stanza is %d bytes, larger than the relay accepts", size)
		}
	}
	if st.Face != policy.Federation {
		if rule != "" && len(e.Text) == 0 {
			text := "refused by the relay's policy (" + rule + ")"
			if sized != "" {
				text = sized + " (" + rule + ")"
			}
			e.Text = map[string]string{"": text}
		}
		return e
	}
	if e.Condition == stanza.PolicyViolation && e.Type == stanza.Modify && rule == "" && ex != policy.ExplainNone {
		// A size refusal by a next hop (SizeError): sizes and the
		// destination domain only, which the sender needs to fix it.
		return e
	}
	e.Text = nil
	if ex == policy.ExplainNone {
		return e
	}
	var text string
	switch e.Condition {
	case stanza.RemoteServerTimeout:
		text = "the server of " + st.ToDomain + " cannot be reached at the moment"
	case stanza.RemoteServerNotFound:
		text = st.ToDomain + " cannot be reached"
	case stanza.ResourceConstraint:
		text = "the relay is busy; try again later"
	case stanza.NotAllowed, stanza.PolicyViolation, stanza.BadRequest:
		if rule != "" {
			text = "refused by the policy of " + st.ToDomain
		}
		if sized != "" {
			text = sized
		}
	}
	if ex == policy.ExplainFull && rule != "" && text != "" {
		text += " (" + rule + ")"
	}
	if text != "" {
		e.Text = map[string]string{"": text}
	}
	return e
}

// errorReply is the relay's own error stanza raw answering st, addressed
// back to st's sender.
func errorReply(st *Stanza, raw []byte) *Stanza {
	return &Stanza{
		Kind: st.Kind, Type: "error", From: st.To, To: st.From, ID: st.ID,
		FromDomain: st.ToDomain, ToDomain: st.FromDomain, Raw: raw,
		Face: st.Face, Own: true, Shard: st.Shard, Received: st.Received,
	}
}

func (r *Router) drop(st *Stanza) {
	if st.Own {
		r.stats.BouncesDropped.AddAt(st.Shard, 1)
		return
	}
	r.stats.Dropped.AddAt(st.Shard, 1)
}

// Stats counts what the router did. Every accepted stanza ends up exactly
// once as delivered, bounced (an error went back to its sender) or dropped
// (by rule: it must not be answered), once its link has settled:
// Accepted = Delivered + Bounced + Dropped.
type Stats struct {
	Accepted Counter
	// Delivered counts stanzas handed over for good: acknowledged by the
	// peer on streams with XEP-0198 stream management, written to the
	// connection on the others.
	Delivered Counter
	Bounced   Counter
	Dropped   Counter
	// Acknowledged counts the delivered stanzas the peer acknowledged
	// (XEP-0198); the others were only written to their connection.
	Acknowledged Counter
	// Refused counts stanzas refused by policy or routing rules (they are
	// also counted as bounced or dropped).
	Refused Counter
	// BreakerBounces counts bounces made while a breaker was open.
	BreakerBounces Counter
	// BouncesDelivered and BouncesDropped follow the stanzas the relay
	// made itself: bounces and answers.
	BouncesDelivered Counter
	BouncesDropped   Counter
	// Answered counts stanzas the relay answered itself (pings to the
	// domains it speaks as); they are not routed, so not accepted.
	Answered Counter
	// PendingIQErrors counts the errors sent for IQ requests whose link
	// died before they were answered (see LinkDown); the requests were
	// counted delivered.
	PendingIQErrors Counter
	// Traffic counts accepted and delivered stanzas by face, direction
	// and kind; Bounces counts bounces by condition (see metrics.go).
	Traffic Traffic
	Bounces Bounces
}

// Balanced reports whether every accepted stanza is accounted for.
func (s *Stats) Balanced() bool {
	return s.Accepted.Load() == s.Delivered.Load()+s.Bounced.Load()+s.Dropped.Load()
}
