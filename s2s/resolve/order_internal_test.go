package resolve

import (
	"slices"
	"testing"
)

// script returns an IntN that answers n-1 to the shuffle's calls (so the
// shuffle leaves the list as it is) and then the given picks, checking each
// bound.
func script(t *testing.T, shuffleCalls int, picks ...int) func(int) int {
	calls := 0
	return func(n int) int {
		calls++
		if calls <= shuffleCalls {
			return n - 1
		}
		i := calls - shuffleCalls - 1
		if i >= len(picks) {
			t.Fatalf("more draws than scripted (bound %d)", n)
		}
		if picks[i] >= n {
			t.Fatalf("scripted pick %d is outside [0, %d)", picks[i], n)
		}
		return picks[i]
	}
}

// orderCandidates applies order to candidates, as Lookup does to records.
func orderCandidates(cs []Candidate, intN func(int) int) []string {
	rs := make([]ranked, len(cs))
	for i, c := range cs {
		rs[i] = ranked{c.Priority, c.Weight, i}
	}
	order(rs, intN)
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = cs[r.src].Host
	}
	return out
}

// TestOrderRFC2782 walks the selection of RFC 2782 "Usage rules" by hand.
func TestOrderRFC2782(t *testing.T) {
	rec := func(host string, prio, weight uint16) Candidate {
		return Candidate{Host: host, Priority: prio, Weight: weight}
	}
	tests := []struct {
		name  string
		in    []Candidate
		picks []int
		want  []string
	}{{
		// Weights A0 B10 C20 D30, total 60. Running sums A0 B10 C30 D60.
		// Draw 25 → C. Left A0 B10 D30 (sums 0 10 40): draw 0 → A.
		// Left B10 D30 (sums 10 40): draw 11 → D. Then B.
		name:  "weighted with a zero weight",
		in:    []Candidate{rec("b", 1, 10), rec("c", 1, 20), rec("a", 1, 0), rec("d", 1, 30)},
		picks: []int{25, 0, 11},
		want:  []string{"c", "a", "d", "b"},
	}, {
		// The draw is inclusive of the total: 60 takes the last record.
		name:  "draw equal to the total",
		in:    []Candidate{rec("a", 1, 0), rec("b", 1, 10), rec("c", 1, 20), rec("d", 1, 30)},
		picks: []int{60, 30, 0},
		want:  []string{"d", "c", "a", "b"},
	}, {
		// Lower priority values come first whatever the weights.
		name:  "priorities",
		in:    []Candidate{rec("p20", 20, 100), rec("p5", 5, 0), rec("p10b", 10, 1), rec("p10a", 10, 1)},
		picks: []int{1}, // p10 group (after identity shuffle p10b, p10a): sums 1 2 → draw 1 → p10b
		want:  []string{"p5", "p10b", "p10a", "p20"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := slices.Clone(tt.in)
			// Shuffle calls: len(group)-1 for each priority group.
			groups := map[uint16]int{}
			for _, c := range cs {
				groups[c.Priority]++
			}
			shuffles := 0
			for _, n := range groups {
				shuffles += n - 1
			}
			if got := orderCandidates(cs, script(t, shuffles, tt.picks...)); !slices.Equal(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
		})
	}
}
