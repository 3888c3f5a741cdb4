package s2s

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// Metrics are the server's labelled counts, for the admin endpoint: the
// setups of outbound links and their failures by stage, how long setups
// take, the outcomes of dialback and SASL EXTERNAL, and the traffic of
// the links that have ended, per destination domain (bounded). Nothing here
// is touched per stanza: setups, verifications and the end of a link are
// counted when they happen, everything else is read from the streams and
// links when scraped.
type Metrics struct {
	setups   [3]atomic.Int64            // by face
	failures [3][numStages]atomic.Int64 // by face and stage
	setupDur [3][2]Histogram            // by face and outcome (0 up, 1 failed)
	dialback [numRoles][3]atomic.Int64  // by role and answer (valid, invalid, error)
	external [2][2]atomic.Int64         // by direction (0 in, 1 out) and outcome (0 success, 1 failure)
	retired  domainTraffic
}

// Metrics returns the server's labelled counts.
func (s *Server) Metrics() *Metrics { return &s.metrics }

// Setup stages: where the setup of an outbound link failed.
const (
	stageDNS     = iota // resolving the domain (SRV, addresses)
	stageConnect        // TCP (and, for direct TLS candidates, the handshake)
	stageTLS            // stream headers, features, STARTTLS and its handshake
	stagePeer           // the receiving server's identity and the policy (checkPeer)
	stageAuth           // authenticating to the peer (SASL EXTERNAL, dialback)
	stageOther          // the relay stopping, an internal error
	numStages
)

// SetupStages names the stages, in the order of the counts.
var SetupStages = [numStages]string{"dns", "connect", "tls", "peer", "auth", "other"}

// stageError marks a setup failure with the stage it happened in.
type stageError struct {
	stage int
	err   error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// atStage marks err as a failure of stage.
func atStage(stage int, err error) error { return &stageError{stage, err} }

// stageOf classifies the error of a failed setup: a lookup failure is dns,
// a connection failure connect, then the marks of dial (dns) and
// openStream (tls), and checkPeer's refusal (peer); what fails after those
// is the authentication.
func stageOf(err error) int {
	var se *stageError
	var rp *refusedPeer
	var de *resolve.DialError
	var re *resolve.Error
	switch {
	case errors.As(err, &se):
		return se.stage
	case errors.As(err, &rp):
		return stagePeer
	case errors.As(err, &de):
		return stageConnect
	case errors.As(err, &re):
		return stageDNS
	case errors.Is(err, ErrServerClosed):
		return stageOther
	}
	return stageAuth // link.open's last step: nothing marks it
}

// setup counts the outcome of an outbound link's setup (connection and
// authentication, retries of an internal route included) begun at start.
func (m *Metrics) setup(face policy.Face, start time.Time, err error) {
	f := faceIdx(face)
	m.setups[f].Add(1)
	d := time.Since(start)
	if err == nil {
		m.setupDur[f][0].Observe(d)
		return
	}
	m.failures[f][stageOf(err)].Add(1)
	m.setupDur[f][1].Observe(d)
}

func faceIdx(f policy.Face) int {
	if f == policy.Federation || f == policy.Internal {
		return int(f)
	}
	return 0
}

// Dialback roles (XEP-0220 §1.3), as counted.
const (
	roleReceiving     = iota // the relay checked a peer's db:result (answered valid, invalid or error)
	roleAuthoritative        // the relay answered a db:verify
	roleInitiating           // the relay's own db:result was answered
	numRoles
)

// DialbackRoles and DialbackAnswers name the dialback counts' labels.
var (
	DialbackRoles   = [numRoles]string{"receiving", "authoritative", "initiating"}
	DialbackAnswers = [3]string{"valid", "invalid", "error"}
)

// dialbackReply counts an answer the relay sent on an inbound stream.
func (m *Metrics) dialbackReply(r dialback.Element) {
	role := roleReceiving
	if r.Kind == dialback.KindVerify {
		role = roleAuthoritative
	}
	switch r.Type {
	case dialback.TypeValid:
		m.dialback[role][0].Add(1)
	case dialback.TypeInvalid:
		m.dialback[role][1].Add(1)
	case dialback.TypeError:
		m.dialback[role][2].Add(1)
	}
}

// dialbackAnswered counts the answer to one of the relay's db:result.
func (m *Metrics) dialbackAnswered(o dialback.Outcome) {
	switch o {
	case dialback.Authorized:
		m.dialback[roleInitiating][0].Add(1)
	case dialback.Rejected:
		m.dialback[roleInitiating][1].Add(1)
	default:
		m.dialback[roleInitiating][2].Add(1)
	}
}

// externalOutcome counts a SASL EXTERNAL exchange: out on a stream the
// relay opened, else on one a peer opened.
func (m *Metrics) externalOutcome(out, ok bool) {
	d, o := 0, 1
	if out {
		d = 1
	}
	if ok {
		o = 0
	}
	m.external[d][o].Add(1)
}

// Count is one labelled count.
type Count struct {
	Labels []string
	N      int64
}

// Setups returns the link setups by face.
func (m *Metrics) Setups() []Count {
	var out []Count
	for _, f := range []policy.Face{policy.Federation, policy.Internal} {
		out = append(out, Count{[]string{f.String()}, m.setups[f].Load()})
	}
	return out
}

// SetupFailures returns the failed link setups by face and stage.
func (m *Metrics) SetupFailures() []Count {
	var out []Count
	for _, f := range []policy.Face{policy.Federation, policy.Internal} {
		for s, name := range SetupStages {
			out = append(out, Count{[]string{f.String(), name}, m.failures[f][s].Load()})
		}
	}
	return out
}

// SetupDurations returns the setup duration histograms by face and
// outcome ("up", "failed").
func (m *Metrics) SetupDurations(fn func(face, outcome string, h HistogramSnapshot)) {
	for _, f := range []policy.Face{policy.Federation, policy.Internal} {
		fn(f.String(), "up", m.setupDur[f][0].Snapshot())
		fn(f.String(), "failed", m.setupDur[f][1].Snapshot())
	}
}

// Dialback returns the dialback answers by role and answer.
func (m *Metrics) Dialback() []Count {
	var out []Count
	for r, role := range DialbackRoles {
		for a, answer := range DialbackAnswers {
			out = append(out, Count{[]string{role, answer}, m.dialback[r][a].Load()})
		}
	}
	return out
}

// External returns the SASL EXTERNAL outcomes by direction ("in": the
// relay was asked, "out": the relay asked) and outcome.
func (m *Metrics) External() []Count {
	var out []Count
	for d, dir := range []string{"in", "out"} {
		for o, outcome := range []string{"success", "failure"} {
			out = append(out, Count{[]string{dir, outcome}, m.external[d][o].Load()})
		}
	}
	return out
}

// SetupBuckets are the upper bounds (seconds) of the setup duration
// histograms' buckets.
var SetupBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram counts durations in SetupBuckets, lock-free.
type Histogram struct {
	counts [len(SetupBuckets) + 1]atomic.Int64 // per bucket, the last for +Inf
	sum    atomic.Int64                        // nanoseconds
}

// Observe adds a duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := sort.SearchFloat64s(SetupBuckets[:], s) // first bound >= s
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a histogram as Prometheus wants it: the count, the
// sum in seconds and the cumulative count of each bucket by upper bound.
type HistogramSnapshot struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Snapshot reads the histogram. Observations made meanwhile may be in the
// buckets and not yet in the sum, never the other way round in the count.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Buckets: make(map[float64]uint64, len(SetupBuckets))}
	var cum uint64
	for i, ub := range SetupBuckets {
		cum += uint64(h.counts[i].Load())
		s.Buckets[ub] = cum
	}
	s.Count = cum + uint64(h.counts[len(SetupBuckets)].Load())
	s.Sum = time.Duration(h.sum.Load()).Seconds()
	return s
}

// StreamCount is how many streams are open on a face in a direction
// ("in": peers opened them, "out": the relay's links), by how their
// pairs are authenticated ("none" while not yet).
type StreamCount struct {
	Face, Dir, Auth string
	N               int
}

// OpenStreams counts the open streams by face, direction and
// authentication: an inbound stream by the strongest method among the
// pairs authorized on it (external before dialback), a link by the method
// the relay authenticated with, "none" while it is being set up. Links are
// those in the link table (one that has retired is closing).
func (s *Server) OpenStreams() []StreamCount {
	s.init()
	var n [3][2][3]int // face, direction, auth
	auth := func(a policy.Auth) int {
		switch a {
		case policy.AuthExternal:
			return 1
		case policy.AuthDialback:
			return 2
		}
		return 0
	}
	s.mu.Lock()
	for c := range s.conns {
		best := policy.AuthNone
		c.mu.Lock()
		for _, ps := range c.pairs {
			if ps.auth == policy.AuthExternal || best == policy.AuthNone {
				best = ps.auth
			}
		}
		c.mu.Unlock()
		n[faceIdx(c.face)][0][auth(best)]++
	}
	s.mu.Unlock()
	s.lmu.RLock()
	for _, l := range s.links {
		if l.isRider() {
			continue // not a stream of its own
		}
		l.mu.Lock()
		a := policy.AuthNone
		if l.up {
			a = l.auth
		}
		l.mu.Unlock()
		n[faceIdx(s.faceOf(l.pair))][1][auth(a)]++
	}
	s.lmu.RUnlock()
	var out []StreamCount
	for _, f := range []policy.Face{policy.Federation, policy.Internal} {
		for d, dir := range []string{"in", "out"} {
			for a, name := range []string{"none", "external", "dialback"} {
				out = append(out, StreamCount{f.String(), dir, name, n[f][d][a]})
			}
		}
	}
	return out
}

// DomainLoad is what the relay holds and has written towards one
// destination domain.
type DomainLoad struct {
	// Links is the number of links towards it in the link table; Queued
	// the stanzas waiting in them.
	Links, Queued int
	// Written is the stanzas written towards it: by the links open now,
	// and by those that ended while the domain was among the tracked ones
	// (see domainTraffic).
	Written int64
}

// Domains returns the load of every destination domain with a link open
// or with traffic tracked.
func (s *Server) Domains() map[string]DomainLoad {
	s.init()
	// Under lmu, with the table: a link leaves the table and hands its
	// count to the retired under lmu (removeLink), so no count is missed
	// or seen twice.
	s.lmu.RLock()
	out := s.metrics.retired.snapshot()
	for _, l := range s.links {
		l.mu.Lock()
		q := l.qn
		l.mu.Unlock()
		d := out[l.pair.To]
		d.Links++
		d.Queued += q
		d.Written += l.written.Load()
		out[l.pair.To] = d
	}
	s.lmu.RUnlock()
	return out
}

// maxTrackedDomains bounds the destination domains whose past traffic is
// kept.
const maxTrackedDomains = 1024

// domainTraffic keeps the stanzas written by links that have ended, per
// destination domain, for at most maxTrackedDomains domains: when full, a
// domain not in it replaces the one with the least traffic, starting from
// its own count. The busiest domains thus stay, whatever strangers make
// the relay send to many small ones; a domain that comes back after being
// replaced starts again from what its latest link wrote. It is updated
// when a link ends, never per stanza.
type domainTraffic struct {
	mu sync.Mutex
	n  map[string]int64
}

func (t *domainTraffic) add(domain string, n int64) {
	if n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = make(map[string]int64)
	}
	if _, ok := t.n[domain]; !ok && len(t.n) >= maxTrackedDomains {
		least, min := "", int64(-1)
		for d, c := range t.n {
			if min < 0 || c < min {
				least, min = d, c
			}
		}
		delete(t.n, least)
	}
	t.n[domain] += n
}

func (t *domainTraffic) snapshot() map[string]DomainLoad {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]DomainLoad, len(t.n))
	for d, n := range t.n {
		out[d] = DomainLoad{Written: n}
	}
	return out
}

// retire folds a link's traffic into its domain's when it leaves the link
// table (removeLink, under lmu), and what it wrote after that when it ends.
func (m *Metrics) retire(l *link) { m.retired.add(l.pair.To, l.written.Swap(0)) }
