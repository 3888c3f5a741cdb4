package resolve_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// BenchmarkLookupCached measures a lookup answered from the cache: both SRV
// answers cached, four candidates merged and ordered. It reports the DNS
// queries sent per lookup, which must be zero.
func BenchmarkLookupCached(b *testing.B) {
	srv := resolvetest.NewServer(b, `
_xmpps-server._tcp.bench.test. 300 SRV 10 60 5270 tls1.bench.test.
_xmpp-server._tcp.bench.test.  300 SRV 10 30 5269 tcp1.bench.test.
_xmpp-server._tcp.bench.test.  300 SRV 10 10 5269 tcp2.bench.test.
_xmpp-server._tcp.bench.test.  300 SRV 20 0  5269 tcp3.bench.test.
`)
	r := newResolver(b, dnsConfig(srv.Addr), resolve.Options{IntN: rand.IntN})
	ctx := context.Background()
	if cs, err := r.Lookup(ctx, "bench.test"); err != nil || len(cs) != 4 {
		b.Fatalf("warm-up lookup: %v, %v", cs, err)
	}
	before := srv.Total()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Lookup(ctx, "bench.test"); err != nil {
			b.Fatal(err)
		}
	}
	sent := srv.Total() - before
	if sent != 0 {
		b.Fatalf("%d queries sent by cached lookups", sent)
	}
	b.ReportMetric(float64(sent)/float64(b.N), "queries/op")
}
