package certs_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind (handshake
// helpers, single-flight waiters).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
