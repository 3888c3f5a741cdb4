// Package routing_test checks routing through a whole relay: an internal
// server (a fake a.test behind the relay) and servers of the federation
// (fakes published in the test's DNS) exchange stanzas through it, and the
// relay applies its policy, bounces what it cannot deliver with the right
// condition, trips and resets its circuit breakers, refuses to be an open
// relay, reloads its policy without dropping allowed streams, and answers
// its internal DNS queries. Every test ends by checking that the router's
// counts balance (routing.Stats.Balanced).
package routing_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
