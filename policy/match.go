package policy

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/fedrelay/fedrelay/config"
)

// text is what the hot path accepts: the caller's strings, or the byte
// slices a framer holds. Both index, and compare with a string, without
// allocating.
type text interface{ ~string | ~[]byte }

// A table answers, for one domain, every pattern that names it.
//
// A pattern "example.org" is an exact entry under the key "example.org";
// "*.example.org" is a wildcard entry under the same key, and a domain
// matches it when one of its proper suffixes, cut at a dot, is that key.
// So a.b.example.org finds it through the suffix example.org, while
// example.org itself (no proper suffix equal to the key) and
// badexample.org (whose only suffix is org) do not.
//
// The keys sit in a small open-addressing table, hashed from their last
// byte to their first. Reading a domain the same way, right to left, the
// running hash at each dot is the hash of the suffix after it, so one pass
// over the domain yields the hash of every suffix and of the whole name:
// a probe per suffix is a slot index and a hash compare, and strings are
// compared only on a hash hit. (A Go map would hash every suffix again from
// scratch; for a three-label name that was most of the decision's time.)
type table struct {
	slots []slot
	mask  uint64
	// maxWild is the most labels in any wildcard key: longer suffixes
	// cannot be wildcard keys, so no probe is made for them.
	maxWild int
}

type slot struct {
	used bool
	hash uint64
	key  string
	e    entry
}

// entry is what names one key: exactly, and as the base of a wildcard.
type entry struct {
	exact, wild hits
}

// hits are 1-based indexes (0: none) into policy.allow, policy.deny and
// policy.rules; rule is the smallest, since the first matching rule applies.
type hits struct {
	allow, deny, rule int32
}

// match is what a domain's patterns say. allow and deny come from the most
// specific pattern that matched (exact first, then the longest wildcard):
// that is the one a decision names. rule is the first rule in order.
type match struct {
	allow, deny, rule int32
}

func (m *match) add(h hits) {
	if h.allow != 0 {
		m.allow = h.allow
	}
	if h.deny != 0 {
		m.deny = h.deny
	}
	if h.rule != 0 && (m.rule == 0 || h.rule < m.rule) {
		m.rule = h.rule
	}
}

// Hashing reads a name in 8-byte words taken from its right end: the last
// word is its last 8 bytes, the one before the 8 before those, and the
// first word holds what remains (1 to 8 bytes) in its low bytes. Every
// suffix of a domain shares the domain's right end, so it shares these
// words too, except that its first word is the part of one of the
// domain's words after the dot: that word shifted right. One pass over the
// domain's words thus yields the hash of the domain and of each suffix.
const (
	hashSeed = 0x243f6a8885a308d3
	hashMul  = 0x9e3779b97f4a7c15
)

// mix folds a word into the hash: the two halves of a 128-bit product.
func mix(h, w uint64) uint64 {
	hi, lo := bits.Mul64(h^w, hashMul)
	return hi ^ lo
}

// word loads a chunk of at most 8 bytes little-endian: c[0] is the low
// byte.
func word[T text](c T) uint64 {
	if len(c) >= 8 {
		_ = c[7]
		return uint64(c[0]) | uint64(c[1])<<8 | uint64(c[2])<<16 | uint64(c[3])<<24 |
			uint64(c[4])<<32 | uint64(c[5])<<40 | uint64(c[6])<<48 | uint64(c[7])<<56
	}
	var w uint64
	for i := len(c) - 1; i >= 0; i-- {
		w = w<<8 | uint64(c[i])
	}
	return w
}

// hashKey hashes a key (lower case) as resolve hashes a domain.
func hashKey(k string) uint64 {
	h := uint64(hashSeed)
	for b := len(k); b > 0; b -= 8 {
		h = mix(h, word(k[max(b-8, 0):b]))
	}
	return h
}

const (
	bytes01 = 0x0101010101010101
	bytes7f = 0x7f7f7f7f7f7f7f7f
	bytes80 = 0x8080808080808080
	dots    = '.' * bytes01
)

// zeroBytes returns 0x80 in every byte of x that is zero, exactly (no
// false positives from borrows).
func zeroBytes(x uint64) uint64 {
	return ^((x&bytes7f + bytes7f) | x | bytes7f)
}

// upperBytes returns 0x80 in every byte of w that is 'A'…'Z'; w must be
// ASCII (no high bits), so the additions carry into no neighbour.
func upperBytes(w uint64) uint64 {
	atLeastA := w + (0x80-'A')*bytes01
	aboveZ := w + (0x80-'Z'-1)*bytes01
	return atLeastA &^ aboveZ & bytes80
}

// index picks a slot; mix spreads every input bit over the low ones.
func (t *table) index(h uint64) uint64 { return h & t.mask }

// find returns the entry for the lower-case key k with hash h, or nil. The
// table is at most half full, so the probe ends at an empty slot.
func find[T text](t *table, h uint64, k T) *entry {
	for i := t.index(h); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if !s.used {
			return nil
		}
		if s.hash == h && s.key == string(k) {
			return &s.e
		}
	}
}

// findFolded is find for a key that holds upper case (rare: callers pass
// normalised names); it folds the key into a stack buffer first. It is
// kept out of line so the common path does not carry the buffer.
//
//go:noinline
func findFolded[T text](t *table, h uint64, k T) *entry {
	var buf [maxDomain]byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return find(t, h, buf[:len(k)])
}

// resolved is the policy's answer for one remote domain.
type resolved struct {
	allowed bool
	reason  Reason
	label   string
	rule    *rule // the first matching rule, or nil
}

// resolve decides a remote domain. It folds ASCII upper case and drops one
// trailing dot (RFC 7622 §3.2) itself, at no cost for the normalised names
// it should be given, so that "EVIL.example." cannot slip past a deny
// entry; a name with non-ASCII bytes (a U-label the caller failed to
// convert), empty or longer than a domainpart may be is refused outright
// rather than compared. It allocates nothing.
func resolve[T text](p *Policy, d T) resolved {
	n := len(d)
	if n > 0 && d[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxDomain {
		return resolved{reason: ReasonDomain, label: labelDomain}
	}
	t := &p.table
	var m match
	h, labels, upper := uint64(hashSeed), 0, false
	// Words from the right. At each dot, the hash of the suffix after it
	// is h mixed with the rest of the word beyond the dot (or h itself
	// when the dot ends the word). Wildcards come from the shortest suffix
	// to the longest, and a longer one is more specific, so it overwrites.
	for b := n; b > 0; b -= 8 {
		a := max(b-8, 0)
		w := word(d[a:b])
		if w&bytes80 != 0 {
			return resolved{reason: ReasonDomain, label: labelDomain}
		}
		if u := upperBytes(w); u != 0 {
			w |= u >> 2 // 0x80 → 0x20, the case bit
			upper = true
		}
		for z := zeroBytes(w ^ dots); z != 0 && labels < t.maxWild; {
			j := (63 - bits.LeadingZeros64(z)) / 8 // the dot's byte in w
			z &^= 0x80 << (8 * j)
			labels++
			sh := h
			if a+j+1 < b {
				sh = mix(h, w>>(8*(j+1)))
			}
			e := find(t, sh, d[a+j+1:n])
			if upper {
				e = findFolded(t, sh, d[a+j+1:n])
			}
			if e != nil {
				m.add(e.wild)
			}
		}
		h = mix(h, w)
	}
	if t.slots != nil {
		e := find(t, h, d[:n])
		if upper {
			e = findFolded(t, h, d[:n])
		}
		if e != nil {
			m.add(e.exact)
		}
	}
	return p.decideDomain(m)
}

// decideDomain applies deny-wins to a match.
func (p *Policy) decideDomain(m match) resolved {
	var r resolved
	if m.rule != 0 {
		r.rule = &p.rules[m.rule-1]
	}
	switch {
	case m.deny != 0:
		r.reason, r.label = ReasonDenyList, p.denyLabels[m.deny-1]
	case m.allow != 0:
		r.allowed, r.reason, r.label = true, ReasonAllowList, p.allowLabels[m.allow-1]
	default:
		r.allowed, r.reason, r.label = p.defaultAllow, ReasonDefault, p.defaultLabel
	}
	return r
}

type listKind uint8

const (
	listAllow listKind = iota
	listDeny
)

// tableBuilder gathers the patterns of a policy, then lays out a table.
type tableBuilder struct {
	m       map[string]entry
	maxWild int
}

func newTableBuilder() *tableBuilder {
	return &tableBuilder{m: make(map[string]entry)}
}

// parsePattern normalises a pattern and returns its key and whether it is a
// wildcard.
func parsePattern(key, s string) (string, bool, error) {
	n, err := config.NormalizePattern(s)
	if err != nil {
		return "", false, fmt.Errorf("%s: %q: %v", key, s, err)
	}
	base, wild := strings.CutPrefix(n, "*.")
	return base, wild, nil
}

// set applies f to the hits of one key.
func (b *tableBuilder) set(base string, wild bool, f func(*hits)) {
	e := b.m[base]
	if wild {
		f(&e.wild)
		b.maxWild = max(b.maxWild, strings.Count(base, ".")+1)
	} else {
		f(&e.exact)
	}
	b.m[base] = e
}

// addList adds policy.allow or policy.deny and returns the labels of its
// entries ("deny[2] *.evil.example").
func (b *tableBuilder) addList(key, name string, list []string, which listKind) ([]string, error) {
	labels := make([]string, len(list))
	for i, s := range list {
		base, wild, err := parsePattern(fmt.Sprintf("%s[%d]", key, i), s)
		if err != nil {
			return nil, err
		}
		pattern := base
		if wild {
			pattern = "*." + base
		}
		labels[i] = fmt.Sprintf("%s[%d] %s", name, i, pattern)
		idx := int32(i + 1)
		b.set(base, wild, func(h *hits) {
			// A pattern listed twice keeps its first position.
			switch {
			case which == listAllow && h.allow == 0:
				h.allow = idx
			case which == listDeny && h.deny == 0:
				h.deny = idx
			}
		})
	}
	return labels, nil
}

func (b *tableBuilder) addRule(key, s string, index int) error {
	base, wild, err := parsePattern(key, s)
	if err != nil {
		return err
	}
	idx := int32(index + 1)
	b.set(base, wild, func(h *hits) {
		if h.rule == 0 || idx < h.rule {
			h.rule = idx
		}
	})
	return nil
}

// build lays the keys out in a table at most half full.
func (b *tableBuilder) build() table {
	if len(b.m) == 0 {
		return table{}
	}
	size := 8
	for size < 2*len(b.m) {
		size *= 2
	}
	t := table{slots: make([]slot, size), mask: uint64(size - 1), maxWild: b.maxWild}
	for k, e := range b.m {
		h := hashKey(k)
		i := t.index(h)
		for t.slots[i].used {
			i = (i + 1) & t.mask
		}
		t.slots[i] = slot{used: true, hash: h, key: k, e: e}
	}
	return t
}
