package routing_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// BenchmarkRelayThroughput sends messages of about 300 bytes from a remote
// server through one relay to the internal server behind it, over real
// TLS streams on loopback, and reports stanzas/s from the first write to the
// last one the relay wrote to its next hop. The scripted peers run on the
// same machine, so the figure is a floor for the relay, not its ceiling:
//
//	go test ./test/routing -run '^$' -bench RelayThroughput -benchtime 20000x
func BenchmarkRelayThroughput(b *testing.B) {
	s := harness.StartSite(b, "log: {level: warn}", "remote.test")
	in := s.FromOutside(b, "remote.test")
	body := strings.Repeat("hello there ", 14)
	in.Send(harness.Message("bob@remote.test/laptop", "alice@a.test", "warm", body))
	s.Internal.WaitID(b, "warm")
	stats := s.Relay.Router.Stats()
	base := stats.Delivered.Load()

	const chunk = 500
	var batch strings.Builder
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		batch.WriteString(harness.Message("bob@remote.test/laptop", "alice@a.test", fmt.Sprint("m", i), body))
		if (i+1)%chunk == 0 || i == b.N-1 {
			in.Send(batch.String())
			batch.Reset()
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for stats.Delivered.Load() < base+int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d (%s)", stats.Delivered.Load()-base, b.N, s.Relay.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "stanzas/s")
	s.Relay.WaitBalanced(b)
}
