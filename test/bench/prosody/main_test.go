package prosody_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: a Client's reader
// ends with Close, a Server's waiter with Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
