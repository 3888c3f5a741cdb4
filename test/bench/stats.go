package bench

import (
	"math"
	"slices"
	"time"
	"unsafe"
)

// Samples collects durations for percentiles. The zero value is ready.
type Samples struct {
	d     []time.Duration
	ticks tickLog // by send time, in arrival order (AddSent)
}

// Add records one sample.
func (s *Samples) Add(d time.Duration) { s.d = append(s.d, d) }

// AddSent records one sample of a stanza sent at sent (Unix ns), which
// also counts in the tick of its send time (see ticks.go).
func (s *Samples) AddSent(sent int64, d time.Duration) {
	s.d = append(s.d, d)
	s.ticks.add(sent, d)
}

// Ticks summarises the samples by send time (AddSent); NaN figures if
// they were added without one.
func (s *Samples) Ticks() TickFigures { return s.ticks.figures() }

// Reserve makes room for n more samples and touches its memory now.
// Growing a slice of millions of samples while measuring copied it and
// faulted its fresh pages in on the goroutine that records, which then
// stalled for 1–76 ms at a time (appending 2.1M durations in a loop),
// and those stalls showed as latency of whatever path was measured.
func (s *Samples) Reserve(n int) {
	s.d = reserve(s.d, n)
	// Ticks are fewer than samples, or as many with one in flight.
	s.ticks.ticks = reserve(s.ticks.ticks, min(n, maxReservedTicks))
}

// reserve returns v with room for n more elements, its fresh memory
// touched (one store per 4 KiB page), or v itself if it has the room.
func reserve[T any](v []T, n int) []T {
	if cap(v)-len(v) >= n {
		return v
	}
	r := make([]T, len(v), len(v)+n)
	copy(r, v)
	room := r[len(r):cap(r)]
	var zero T
	step := max(1, 4096/max(1, int(unsafe.Sizeof(zero))))
	for i := 0; i < len(room); i += step {
		room[i] = zero
	}
	return r
}

// maxReservedTicks bounds what Reserve sets aside for ticks (4 MiB): a
// paced phase has one tick per millisecond, far fewer.
const maxReservedTicks = 1 << 17

// Len is the number of samples.
func (s *Samples) Len() int { return len(s.d) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) in milliseconds by the
// nearest-rank method, or NaN without samples.
func (s *Samples) Quantile(q float64) float64 {
	if len(s.d) == 0 {
		return math.NaN()
	}
	if !slices.IsSorted(s.d) {
		slices.Sort(s.d)
	}
	return ms(nearestRank(s.d, q))
}

// nearestRank returns the q-quantile (0 ≤ q ≤ 1) of sorted, not empty, by
// the nearest-rank method.
func nearestRank[T any](sorted []T, q float64) T {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Percentiles are the figures reported for a latency distribution, in ms.
type Percentiles struct {
	N     int     `json:"n"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
	Loss  int     `json:"lost,omitempty"`
	Error string  `json:"error,omitempty"`
}

// Summary returns the samples' percentiles.
func (s *Samples) Summary() Percentiles {
	p := Percentiles{N: len(s.d)}
	if p.N == 0 {
		return p
	}
	var sum time.Duration
	for _, d := range s.d {
		sum += d
	}
	p.P50, p.P99, p.P999, p.Max = round3(s.Quantile(0.5)), round3(s.Quantile(0.99)), round3(s.Quantile(0.999)), round3(s.Quantile(1))
	p.Mean = round3(ms(sum / time.Duration(p.N)))
	return p
}

// Spread is min/median/max of one figure over repetitions.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// SpreadOf summarises values, ignoring NaNs; without any it is all zero
// with N 0 (JSON has no NaN).
func SpreadOf(vals []float64) Spread {
	v := make([]float64, 0, len(vals))
	for _, x := range vals {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Min: round3(v[0]), Median: round3(med), Max: round3(v[len(v)-1]), N: len(v)}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// round3 keeps three significant decimals for small values and whole units
// for big ones, so that the JSON stays readable.
func round3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	switch a := math.Abs(x); {
	case a >= 1000:
		return math.Round(x)
	case a >= 1:
		return math.Round(x*1000) / 1000
	default:
		return math.Round(x*1e6) / 1e6
	}
}
