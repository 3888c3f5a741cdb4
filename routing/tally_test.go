package routing

import (
	"errors"
	"testing"

	"github.com/fedrelay/fedrelay/policy"
)

// TestSettleTally: a batch settled through the Tally its link kept counts
// what Settle counts from the records (delivered, the relay's own, traffic
// by face and kind), and its IQ request is tracked (the link's end answers
// it with an error) as with Settle.
func TestSettleTally(t *testing.T) {
	out := Pair{From: "a.example", To: "example.org"}
	batch := func() []Stanza {
		own := iq("result", "a.example", "example.org", "own", out.From, out.To, policy.Internal)
		own.Own = true
		msg := iq("", "alice@a.example", "bob@example.org", "m", out.From, out.To, policy.Internal)
		msg.Kind = policy.Message
		return []Stanza{
			*iq("get", "alice@a.example/phone", "bob@example.org/res", "q", out.From, out.To, policy.Internal),
			*msg, *own,
			*iq("result", "alice@a.example/phone", "bob@example.org/res", "r", out.From, out.To, policy.Internal),
		}
	}
	byRecords, _ := iqRouter(t, nil)
	sts := batch()
	byRecords.Settle(Sending, out, sts, nil)
	byRecords.Settle(Written, out, sts, nil)
	byTally, _ := iqRouter(t, nil)
	sts = batch()
	var tl Tally
	for i := range sts {
		tl.Add(&sts[i])
	}
	byTally.SettleTally(Sending, out, sts, &tl)
	byTally.SettleTally(Written, out, sts, &tl)
	for _, r := range []*Router{byRecords, byTally} {
		r.Settle(Down, out, nil, errors.New("connection reset by peer"))
	}

	a, b := byRecords.Stats(), byTally.Stats()
	for _, c := range []struct {
		name string
		a, b int64
	}{
		{"delivered", a.Delivered.Load(), b.Delivered.Load()},
		{"bounces delivered", a.BouncesDelivered.Load(), b.BouncesDelivered.Load()},
		{"errors for pending IQs", a.PendingIQErrors.Load(), b.PendingIQErrors.Load()},
		{"IQs out", a.Traffic.Load(policy.Internal, policy.Out, policy.IQ), b.Traffic.Load(policy.Internal, policy.Out, policy.IQ)},
		{"messages out", a.Traffic.Load(policy.Internal, policy.Out, policy.Message), b.Traffic.Load(policy.Internal, policy.Out, policy.Message)},
	} {
		if c.a != c.b {
			t.Errorf("%s: %d through the tally, %d through the records", c.name, c.b, c.a)
		}
	}
	if n := b.Delivered.Load(); n != 3 {
		t.Errorf("delivered %d, want 3 (the relay's own stanza apart)", n)
	}
	sent := func(k policy.Kind) int64 {
		return b.Traffic.Load(policy.Internal, policy.Out, k) + b.Traffic.Load(policy.Federation, policy.Out, k)
	}
	if iqs, msgs := sent(policy.IQ), sent(policy.Message); iqs != 2 || msgs != 1 {
		t.Errorf("traffic out: %d IQs and %d messages, want 2 and 1", iqs, msgs)
	}
	if n := b.PendingIQErrors.Load(); n != 1 {
		t.Errorf("%d errors for pending IQs, want 1: the request was not tracked", n)
	}
}
