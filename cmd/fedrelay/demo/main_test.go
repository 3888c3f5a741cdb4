package demo_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of the relays, the endpoints and the nameserver must end
// with the demo.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
