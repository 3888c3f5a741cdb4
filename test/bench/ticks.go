package bench

import (
	"math"
	"slices"
	"time"
)

// The paced phases of the latency scenario send in ticks of 1 ms: each
// tick writes what the rate allows so far, all of it stamped with one send
// time. A path's p99 then mixes two things: how long the first stanza of a
// tick takes to cross (the hop itself, and any wake-ups on the way), and
// how long the path takes to drain a whole tick behind it (its speed under
// the machine's load, and any tick still in the path when the next one
// starts). The tick figures separate them, so that a p99 can be read: what
// the first stanza of each tick saw, what the last one saw, how large the
// ticks were (a late tick carries more), and how often a tick found the
// path still busy with the one before.

// tick is one tick as a sink saw it: its send time, how many of its
// stanzas arrived, and the latencies of the first and the last.
type tick struct {
	sent        int64 // Unix ns, the stamp the tick's stanzas carry
	n           int
	first, last time.Duration
}

// tickLog gathers the ticks of a paced phase from the sink's arrivals, in
// arrival order: the stanzas of one tick arrive together and in order, as
// they travel one stream.
type tickLog struct{ ticks []tick }

// add records the arrival of a stanza stamped sent, d after it was sent.
func (l *tickLog) add(sent int64, d time.Duration) {
	if n := len(l.ticks); n > 0 && l.ticks[n-1].sent == sent {
		t := &l.ticks[n-1]
		t.n++
		t.last = d
		return
	}
	l.ticks = append(l.ticks, tick{sent: sent, n: 1, first: d, last: d})
}

// TickFigures summarise a tickLog (latencies in ms).
type TickFigures struct {
	Ticks     int
	SizeP50   float64 // stanzas per tick
	SizeP99   float64
	FirstP50  float64 // latency of each tick's first stanza
	FirstP99  float64
	LastP50   float64 // latency of each tick's last stanza
	LastP99   float64
	BusyShare float64 // share of ticks sent while the one before was still arriving (0–1)
}

// figures summarises the ticks; all NaN without any.
func (l *tickLog) figures() TickFigures {
	nan := math.NaN()
	f := TickFigures{Ticks: len(l.ticks), SizeP50: nan, SizeP99: nan, FirstP50: nan, FirstP99: nan,
		LastP50: nan, LastP99: nan, BusyShare: nan}
	if len(l.ticks) == 0 {
		return f
	}
	sizes := make([]float64, len(l.ticks))
	first := make([]float64, len(l.ticks))
	last := make([]float64, len(l.ticks))
	busy := 0
	for i, t := range l.ticks {
		sizes[i], first[i], last[i] = float64(t.n), ms(t.first), ms(t.last)
		if i > 0 {
			p := l.ticks[i-1]
			if p.sent+int64(p.last) > t.sent {
				busy++
			}
		}
	}
	f.SizeP50, f.SizeP99 = quantiles(sizes)
	f.FirstP50, f.FirstP99 = quantiles(first)
	f.LastP50, f.LastP99 = quantiles(last)
	f.BusyShare = float64(busy) / float64(len(l.ticks))
	return f
}

// quantiles sorts v and returns its median and 99th percentile.
func quantiles(v []float64) (p50, p99 float64) {
	slices.Sort(v)
	return round3(nearestRank(v, 0.5)), round3(nearestRank(v, 0.99))
}
