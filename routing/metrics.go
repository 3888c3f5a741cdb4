package routing

import (
	"github.com/sony/gobreaker/v2"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/policy"
)

// Traffic counts stanzas by face, direction and kind, for metrics: In is
// what the relay read from authenticated streams on a face (the stanzas it
// accepted), Out what it wrote to the links of a face (the stanzas it
// delivered); the relay's own stanzas (bounces, answers) are in neither.
// The counts are arrays indexed by the small enums, so counting costs an
// atomic add on the stream's shard, never a lookup.
type Traffic struct {
	c [3][2][4]Counter // face (0 unknown), direction (0 in, 1 out), kind (0 unknown)
}

// in counts a stanza read from a stream (Route).
func (t *Traffic) in(st *Stanza) {
	t.c[faceIndex(st.Face)][0][kindIndex(st.Kind)].AddAt(st.Shard, 1)
}

// trafficTally is a batch's written stanzas by face and kind, summed on
// the stack before they are added to the shared counters.
type trafficTally [3][4]int64

// add counts a stanza written to a link. A stanza that is not the relay's
// own leaves by the face opposite to the one it entered by.
func (t *trafficTally) add(st *Stanza) {
	f := faceIndex(st.Face)
	if f != 0 {
		f = 3 - f
	}
	t[f][kindIndex(st.Kind)]++
}

// out adds a tally of written stanzas.
func (t *Traffic) out(shard uint32, tally *trafficTally) {
	for f := range tally {
		for k, n := range tally[f] {
			if n != 0 {
				t.c[f][1][k].AddAt(shard, n)
			}
		}
	}
}

// Load returns the count of stanzas of kind that went dir ("in" read from
// a stream on face, "out" written to a link on face).
func (t *Traffic) Load(face policy.Face, dir policy.Direction, kind policy.Kind) int64 {
	d := 0
	if dir == policy.Out {
		d = 1
	}
	return t.c[faceIndex(face)][d][kindIndex(kind)].Load()
}

func faceIndex(f policy.Face) int {
	if f == policy.Federation || f == policy.Internal {
		return int(f)
	}
	return 0
}

func kindIndex(k policy.Kind) int {
	if k <= policy.IQ {
		return int(k)
	}
	return 0
}

// BounceConditions are the stanza error conditions bounces are counted by
// (Bounces.Load); any other condition is counted as "other", the last.
var BounceConditions = [...]string{
	string(stanza.RemoteServerNotFound),
	string(stanza.RemoteServerTimeout),
	string(stanza.ResourceConstraint),
	string(stanza.NotAllowed),
	string(stanza.PolicyViolation),
	string(stanza.ServiceUnavailable),
	string(stanza.BadRequest),
	string(stanza.Forbidden),
	string(stanza.NotAuthorized),
	string(stanza.UndefinedCondition),
	"other",
}

// Bounces counts the stanzas answered with an error, by the condition of
// the error (index in BounceConditions).
type Bounces struct {
	c [len(BounceConditions)]Counter
}

func (b *Bounces) add(shard uint32, c stanza.Condition) {
	b.c[conditionIndex(c)].AddAt(shard, 1)
}

// Load returns the count of bounces with condition BounceConditions[i].
func (b *Bounces) Load(i int) int64 { return b.c[i].Load() }

// conditionIndex is c's index in BounceConditions: a switch on the string,
// no map.
func conditionIndex(c stanza.Condition) int {
	switch c {
	case stanza.RemoteServerNotFound:
		return 0
	case stanza.RemoteServerTimeout:
		return 1
	case stanza.ResourceConstraint:
		return 2
	case stanza.NotAllowed:
		return 3
	case stanza.PolicyViolation:
		return 4
	case stanza.ServiceUnavailable:
		return 5
	case stanza.BadRequest:
		return 6
	case stanza.Forbidden:
		return 7
	case stanza.NotAuthorized:
		return 8
	case stanza.UndefinedCondition:
		return 9
	}
	return len(BounceConditions) - 1
}

// BreakerState is the state of a destination domain's circuit breaker:
// 0 closed (or no breaker: nothing failed), 1 half-open (one probe
// admitted), 2 open (connection attempts refused, stanzas bounced).
type BreakerState int

const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

func breakerState(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// Breaker returns the state of domain's breaker without creating one or
// touching its recency (BreakerClosed when it has none).
func (r *Router) Breaker(domain string) BreakerState {
	r.bmu.Lock()
	b, ok := r.breakers.Peek(domain)
	r.bmu.Unlock()
	if !ok {
		return BreakerClosed
	}
	return breakerState(b.state())
}

// BreakerCounts returns how many breakers the router keeps, and how many of
// them are open or half-open.
func (r *Router) BreakerCounts() (kept, open, halfOpen int) {
	r.bmu.Lock()
	all := r.breakers.Values()
	r.bmu.Unlock()
	for _, b := range all {
		switch breakerState(b.state()) {
		case BreakerOpen:
			open++
		case BreakerHalfOpen:
			halfOpen++
		}
	}
	return len(all), open, halfOpen
}
