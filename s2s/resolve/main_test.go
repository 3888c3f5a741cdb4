package resolve_test

import (
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/resolve"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable clock for cache expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// seeded returns a reproducible IntN safe for concurrent use.
func seeded(seed uint64) func(int) int {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return r.IntN(n)
	}
}

// dnsConfig is a config.DNS asking only servers, with test-friendly
// timeouts.
func dnsConfig(servers ...string) config.DNS {
	return config.DNS{
		Servers:   servers,
		Timeout:   2 * time.Second,
		Retries:   1,
		CacheSize: 100,
		MinTTL:    30 * time.Second,
		MaxTTL:    24 * time.Hour,
	}
}

func newResolver(t testing.TB, cfg config.DNS, opts resolve.Options) *resolve.Resolver {
	t.Helper()
	if opts.IntN == nil {
		opts.IntN = seeded(1)
	}
	r, err := resolve.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
