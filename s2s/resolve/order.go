package resolve

import (
	"cmp"
	"slices"
)

// ranked is an SRV record reduced to what ordering needs, so that ordering
// moves small pointer-free values; src says which record it stands for.
type ranked struct {
	priority uint16
	weight   uint16
	src      int
}

// order sorts records in place as RFC 2782 prescribes for SRV records:
// lowest priority first, and within one priority a weighted random
// selection. intN(n) returns a uniform integer in [0, n).
//
// XEP-0368 leaves open how _xmpps-server and _xmpp-server records combine;
// here they form one set, so a direct TLS record and a STARTTLS record of
// the same priority compete by weight.
func order(rs []ranked, intN func(int) int) {
	slices.SortStableFunc(rs, func(a, b ranked) int { return cmp.Compare(a.priority, b.priority) })
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].priority == rs[i].priority {
			j++
		}
		weighted(rs[i:j], intN)
		i = j
	}
}

// weighted orders one priority's records (RFC 2782, "Usage rules"): the
// records start in any order but with the weight-0 ones first; a number is
// drawn uniformly from 0 to the sum of the remaining weights inclusive, and
// the first record whose running sum of weights reaches it is taken next.
// The list starts shuffled so that equal chances stay equal, including among
// weight-0 records.
func weighted(g []ranked, intN func(int) int) {
	if len(g) < 2 {
		return
	}
	for i := len(g) - 1; i > 0; i-- {
		j := intN(i + 1)
		g[i], g[j] = g[j], g[i]
	}
	slices.SortStableFunc(g, func(a, b ranked) int {
		return cmp.Compare(min(a.weight, 1), min(b.weight, 1))
	})
	total := 0
	for _, r := range g {
		total += int(r.weight)
	}
	for k := 0; k < len(g)-1; k++ {
		pick := intN(total + 1)
		sum, m := 0, k
		for ; m < len(g)-1; m++ {
			sum += int(g[m].weight)
			if sum >= pick {
				break
			}
		}
		// Take g[m] out and keep the rest in their order, so weight-0
		// records stay at the front of what remains.
		chosen := g[m]
		copy(g[k+1:m+1], g[k:m])
		g[k] = chosen
		total -= int(chosen.weight)
	}
}
