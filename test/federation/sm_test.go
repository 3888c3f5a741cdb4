package federation_test

import (
	"fmt"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestStreamManagementBetweenRelays: two relays whose federation hop is
// authenticated by SASL EXTERNAL use XEP-0198 on it, as Prosody does: relay
// B offers it in the features after authentication, relay A enables it and
// counts the stanzas delivered only as B acknowledges them.
func TestStreamManagementBetweenRelays(t *testing.T) {
	w := saslWorld(t, "")
	toB := w.FA.Dial(t, w.A.InternalAddr, "a.test", "b.test")
	for i := range 30 {
		toB.Send(harness.Message("alice@a.test", "bob@b.test", fmt.Sprintf("m%d", i), "hi"))
	}
	for i := range 30 {
		waitDelivered(t, w.FB, fmt.Sprintf("m%d", i), w.A, w.B)
	}
	w.B.Logs.Wait(t, "peer authenticated by SASL EXTERNAL", "face", "federation", "domain", "a.test")
	w.A.Logs.Wait(t, "outbound stream up", "face", "federation", "stream_management", "true")
	a := w.A.Router.Stats()
	harness.Eventually(t, func() bool { return a.Acknowledged.Load() == 30 }, "relay A counts 30 acknowledged (has %d)", a.Acknowledged.Load())
	// The internal hops are fakes without stream management: written is
	// delivered there.
	if n := w.B.Router.Stats().Acknowledged.Load(); n != 0 {
		t.Errorf("relay B counts %d acknowledged towards its internal fake, want 0", n)
	}
	harness.Balanced(t, w.A, w.B)
}
