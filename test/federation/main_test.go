// Package federation_test runs whole relays against each other and against
// fake S2S servers (test/harness): two relays federating by dialback, SASL
// EXTERNAL and direct TLS, and the protocol violations a relay's federation
// face must refuse with the exact stream error.
package federation_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a relay, a fake server or the DNS server starts must end
// with its owner.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
