package routing

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func iq(typ, from, to, id, fromDomain, toDomain string, face Face) *Stanza {
	return &Stanza{Kind: policy.IQ, Type: typ, From: from, To: to, ID: id,
		FromDomain: fromDomain, ToDomain: toDomain, Face: face, Raw: []byte("<iq/>")}
}

// TestPendingIQAnswerNormalised: an answer clears the request it answers
// although its addresses are written differently (RFC 7622 comparison:
// localpart and domainpart case-insensitive, a domain in its A-label or
// U-label form), and only the request it answers.
func TestPendingIQAnswerNormalised(t *testing.T) {
	const bucher = "xn--bcher-kva.example" // bücher.example
	tests := []struct {
		name                 string
		reqFrom, reqTo       string // the request's addresses
		ansFrom, ansTo       string // the answer's
		reqID, ansID, remote string
		answered             bool
	}{
		{"same addresses", "alice@a.example/phone", "bob@example.org/res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"localpart case", "alice@a.example/phone", "Bob@example.org/res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"domainpart case", "alice@a.example/phone", "Bob@Example.ORG/res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"answer in upper case", "alice@a.example/phone", "bob@example.org/res", "BOB@EXAMPLE.ORG/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"requester's address case", "Alice@A.Example/phone", "bob@example.org/res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"bare domain", "a.example", "Example.ORG", "example.org", "a.example", "q", "q", "example.org", true},
		{"U-label request, A-label answer", "alice@a.example/phone", "bob@bücher.example/res", "bob@" + bucher + "/res", "alice@a.example/phone", "q", "q", bucher, true},
		{"A-label request, U-label answer", "alice@a.example/phone", "bob@" + bucher + "/res", "bob@bücher.example/res", "alice@a.example/phone", "q", "q", bucher, true},
		{"upper-case U-label", "alice@a.example/phone", "bob@BÜCHER.example/res", "bob@" + bucher + "/res", "alice@a.example/phone", "q", "q", bucher, true},
		{"fullwidth localpart", "alice@a.example/phone", "ｂｏｂ@example.org/res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"trailing dot", "alice@a.example/phone", "bob@example.org./res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", true},
		{"not a JID, written alike", "alice@a.example/phone", "bob@exa mple.org", "bob@exa mple.org", "alice@a.example/phone", "q", "q", "example.org", true},
		// The resourcepart is compared exactly, and so is the id.
		{"resourcepart case", "alice@a.example/phone", "bob@example.org/Res", "bob@example.org/res", "alice@a.example/phone", "q", "q", "example.org", false},
		{"other id", "alice@a.example/phone", "bob@example.org/res", "bob@example.org/res", "alice@a.example/phone", "q", "Q", "example.org", false},
		{"other resource", "alice@a.example/phone", "bob@example.org/res", "bob@example.org/res2", "alice@a.example/phone", "q", "q", "example.org", false},
		{"other requester", "alice@a.example/phone", "bob@example.org/res", "bob@example.org/res", "alice@a.example/laptop", "q", "q", "example.org", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p pendingIQs
			now := time.Now()
			pair := Pair{From: "a.example", To: tc.remote}
			p.add(iq("get", tc.reqFrom, tc.reqTo, tc.reqID, pair.From, pair.To, policy.Internal), now)
			p.answered(iq("result", tc.ansFrom, tc.ansTo, tc.ansID, pair.To, pair.From, policy.Federation))
			left := p.take(pair, now)
			if tc.answered && len(left) != 0 {
				t.Errorf("the answer from %q to %q did not clear the request to %q from %q", tc.ansFrom, tc.ansTo, tc.reqTo, tc.reqFrom)
			}
			if !tc.answered && len(left) != 1 {
				t.Errorf("the answer from %q to %q (id %q) cleared the request to %q from %q (id %q), which it does not answer",
					tc.ansFrom, tc.ansTo, tc.ansID, tc.reqTo, tc.reqFrom, tc.reqID)
			}
			if len(left) == 1 && (left[0].From != tc.reqFrom || left[0].To != tc.reqTo) {
				t.Errorf("pending request from %q to %q, want the addresses as the requester wrote them (%q, %q)",
					left[0].From, left[0].To, tc.reqFrom, tc.reqTo)
			}
		})
	}
}

// TestPendingIQForgetNormalised: a request that is bounced instead of
// written is forgotten under the same key it was remembered by.
func TestPendingIQForgetNormalised(t *testing.T) {
	var p pendingIQs
	now := time.Now()
	st := iq("set", "Alice@A.example/phone", "Bob@Example.org/res", "f1", "a.example", "example.org", policy.Internal)
	p.add(st, now)
	p.forget(st)
	if left := p.take(Pair{From: "a.example", To: "example.org"}, now); len(left) != 0 {
		t.Errorf("%d requests still pending after forget", len(left))
	}
}

// TestPendingIQAllocs: remembering and clearing a request whose addresses
// are already normal costs the copy of its start tag and of its id (lent:
// the stream that read the request allocates nothing for it), nothing to
// clear it.
func TestPendingIQAllocs(t *testing.T) {
	var p pendingIQs
	now := time.Now()
	req := iq("get", "alice@a.example/phone", "bob@example.org/res", "q1", "a.example", "example.org", policy.Internal)
	ans := iq("result", "bob@example.org/res", "alice@a.example/phone", "q1", "example.org", "a.example", policy.Federation)
	// Another request keeps the pair's map alive, as on a busy link.
	p.add(iq("get", "alice@a.example/phone", "bob@example.org/res", "keep", "a.example", "example.org", policy.Internal), now)
	if n := testing.AllocsPerRun(100, func() { p.answered(ans) }); n != 0 {
		t.Errorf("answered: %v allocations, want none", n)
	}
	if n := testing.AllocsPerRun(100, func() { p.add(req, now); p.answered(ans) }); n > 2 {
		t.Errorf("add and answered: %v allocations, want 2 (the copies of the start tag and of the id)", n)
	}
}

// recordingDialer is a Dialer whose links keep what they are given; the
// stanzas for one domain (the requester's) are collected in order.
type recordingDialer struct {
	mu   sync.Mutex
	sent map[Pair][]*Stanza
}

type recordingLink struct {
	d    *recordingDialer
	pair Pair
}

func (d *recordingDialer) Link(pair Pair, admit func(string) (func(error), error)) (Link, error) {
	return recordingLink{d, pair}, nil
}

func (recordingLink) Wake() {}

func (l recordingLink) Enqueue(st *Stanza) error {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	if l.d.sent == nil {
		l.d.sent = map[Pair][]*Stanza{}
	}
	c := *st // a Link keeps a copy, never st
	c.Raw, c.Body, c.Via = st.Bytes(nil), nil, nil
	l.d.sent[l.pair] = append(l.d.sent[l.pair], &c)
	return nil
}

func (d *recordingDialer) to(pair Pair) []*Stanza {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*Stanza(nil), d.sent[pair]...)
}

// iqRouter is a router for a.example (internal) allowing everything, whose
// links keep what they are given (d) and whose bounces are IQ errors.
func iqRouter(t *testing.T, onBounce func(*Stanza, stanza.Error)) (*Router, *recordingDialer) {
	t.Helper()
	pol, err := policy.Compile(config.Policy{Default: "allow"}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &recordingDialer{}
	bouncer := func(dst []byte, st *Stanza, e stanza.Error) ([]byte, bool) {
		return append(dst, "<iq type='error'><"+string(e.Condition)+"/></iq>"...), true
	}
	r := NewRouter(Options{Table: NewTable([]config.Domain{{Name: "a.example", Route: "10.0.0.5:5269"}}),
		Policy: pol, Breaker: config.Breaker{Failures: 3, OpenFor: time.Second, MaxOpenFor: time.Second},
		Dialer: d, Bouncer: bouncer, OnBounce: onBounce})
	return r, d
}

// TestOneAnswerPerIQ: an IQ request answered with its addresses written in
// another case gets that answer only, not a second one (an error) when the
// link it was written on dies afterwards; an unanswered one gets the error.
func TestOneAnswerPerIQ(t *testing.T) {
	r, d := iqRouter(t, nil)
	out := Pair{From: "a.example", To: "example.org"}
	back := Pair{From: "example.org", To: "a.example"}

	for _, id := range []string{"answered", "unanswered"} {
		req := iq("get", "alice@a.example/phone", "Bob@Example.ORG/res", id, out.From, out.To, policy.Internal)
		r.Route(req)
		r.Settle(Sending, out, []Stanza{*req}, nil) // the link is about to write it
		r.Settle(Written, out, []Stanza{*req}, nil)
	}
	res := iq("result", "bob@example.org/res", "alice@a.example/phone", "answered", back.From, back.To, policy.Federation)
	r.Route(res)
	r.Settle(Written, back, []Stanza{*res}, nil)
	r.Settle(Down, out, nil, errors.New("connection reset by peer"))

	var answers []string
	for _, st := range d.to(back) {
		answers = append(answers, st.ID+" "+st.Type)
	}
	if got := strings.Join(answers, ", "); got != "answered result, unanswered error" {
		t.Errorf("a.example received %q, want one answer per request: the result, then the error for the unanswered one", got)
	}
	if n := r.Stats().PendingIQErrors.Load(); n != 1 {
		t.Errorf("PendingIQErrors = %d, want 1", n)
	}
	if !r.Stats().Balanced() {
		t.Errorf("counts do not balance")
	}
}

// BenchmarkPendingIQ is the cost of remembering a request and clearing it
// with its answer, on a link with other requests pending.
func BenchmarkPendingIQ(b *testing.B) {
	for _, bc := range []struct{ name, reqTo, ansFrom string }{
		{"normal", "bob@example.org/res", "bob@example.org/res"},
		{"mixed-case", "Bob@Example.ORG/res", "bob@example.org/res"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p pendingIQs
			now := time.Now()
			p.add(iq("get", "alice@a.example/phone", "bob@example.org/res", "keep", "a.example", "example.org", policy.Internal), now)
			req := iq("get", "alice@a.example/phone", bc.reqTo, "q1", "a.example", "example.org", policy.Internal)
			ans := iq("result", bc.ansFrom, "alice@a.example/phone", "q1", "example.org", "a.example", policy.Federation)
			b.ReportAllocs()
			for b.Loop() {
				p.add(req, now)
				p.answered(ans)
			}
		})
	}
}

// TestLentIDs: a stanza's id is lent (it may point into a buffer the
// caller reuses): the request the router remembers and the stanza OnBounce
// gets keep their own copy.
func TestLentIDs(t *testing.T) {
	var bounced []string
	r, _ := iqRouter(t, func(st *Stanza, e stanza.Error) { bounced = append(bounced, st.ID) })
	out := Pair{From: "a.example", To: "example.org"}
	back := Pair{From: "example.org", To: "a.example"}

	buf := []byte("lent-1")
	lent := unsafe.String(&buf[0], len(buf))
	req := iq("get", "alice@a.example/phone", "bob@example.org/res", lent, out.From, out.To, policy.Internal)
	r.Route(req)
	r.Settle(Sending, out, []Stanza{*req}, nil)
	r.Settle(Written, out, []Stanza{*req}, nil)
	copy(buf, "reused") // the stream reads the next stanza into its buffer
	res := iq("result", "bob@example.org/res", "alice@a.example/phone", "lent-1", back.From, back.To, policy.Federation)
	r.Route(res)
	r.Settle(Written, back, []Stanza{*res}, nil)
	r.Settle(Down, out, nil, errors.New("connection reset by peer"))
	if n := r.Stats().PendingIQErrors.Load(); n != 0 {
		t.Errorf("PendingIQErrors = %d, want 0: the answer did not find its request", n)
	}

	buf = []byte("lent-2")
	lent = unsafe.String(&buf[0], len(buf))
	req = iq("get", "alice@a.example/phone", "bob@example.org/res", lent, out.From, out.To, policy.Internal)
	r.Route(req)
	r.Settle(Failed, out, []Stanza{*req}, Timeout(errors.New("test")))
	copy(buf, "reused")
	if len(bounced) != 1 || bounced[0] != "lent-2" {
		t.Errorf("OnBounce kept ids %q, want [lent-2]", bounced)
	}
}
