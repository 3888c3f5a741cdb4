package peer_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a Server starts must end with Close or Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
