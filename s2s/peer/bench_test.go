package peer_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// BenchmarkHandler: x.test writes messages of about 300 bytes to y.test
// with Outbound.Write, in batches of 100, over TLS on loopback; y.test's
// Handler counts them. One op is one stanza, so allocs/op is what the
// whole path (writing, TLS both ways, framing, the pair check, Handler)
// allocates per stanza: it must be 0.
//
//	go test ./s2s/peer -run '^$' -bench Handler -benchtime 200000x
func BenchmarkHandler(b *testing.B) {
	var count, want atomic.Int64
	want.Store(-1)
	done := make(chan struct{}, 1)
	x := &peer.Server{Domains: []string{"x.test"}}
	y := &peer.Server{Domains: []string{"y.test"}, Handler: func(_ *peer.Inbound, _ *wire.Element) {
		if count.Add(1) == want.Load() {
			done <- struct{}{}
		}
	}}
	addrs := federate(b, x, y)
	o, err := x.Dial(b.Context(), addrs[1], "x.test", "y.test")
	if err != nil {
		b.Fatal(err)
	}

	const batch = 100
	body := strings.Repeat("hello there ", 16)
	var buf []byte
	var ends []int // ends[i]: the bytes of the first i+1 stanzas
	for i := range batch {
		buf = append(buf, peer.Message("bob@x.test/laptop", "alice@y.test", fmt.Sprint("m", i), body).Raw...)
		ends = append(ends, len(buf))
	}
	size := float64(len(buf)) / batch
	send := func(n int) {
		want.Store(count.Load() + int64(n))
		for sent := 0; sent < n; sent += batch {
			k := min(batch, n-sent)
			if _, err := o.Write(buf[:ends[k-1]]); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("handled %d stanzas of %d", count.Load(), n)
		}
	}
	send(10 * batch) // warm up: buffers at their size, TLS records flowing

	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "stanzas/s")
	b.ReportMetric(size, "bytes/stanza")
}
