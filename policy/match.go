package policy

import (
	"fmt"
	"strings"

	"github.com/fedrelay/fedrelay/config"
)

// text is what the hot path accepts: the caller's strings, or the byte
// slices a framer holds. Both index and convert for map keys without
// allocating.
type text interface{ ~string | ~[]byte }

// A table answers, for one domain, every pattern that names it, with one
// map lookup for the domain itself and one per parent suffix.
//
// A pattern "example.org" is an exact entry under the key "example.org";
// "*.example.org" is a wildcard entry under the same key, and a domain
// matches it when one of its proper suffixes, cut at a dot, is that key.
// So a.b.example.org finds it through the suffix example.org, while
// example.org itself (no proper suffix equal to the key) and
// badexample.org (whose only suffix is org) do not.
type table struct {
	m map[string]entry
	// maxWild is the most labels in any wildcard key: suffixes longer
	// than that cannot be in the map, so the walk stops there.
	maxWild int
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

// match is the result of a lookup. allow and deny come from the most
// specific pattern that matched (exact first, then the longest wildcard):
// that is the one a decision names. rule is the first rule in order.
type match struct {
	allow, deny, rule int32
}

type listKind uint8

const (
	listAllow listKind = iota
	listDeny
)

type tableBuilder struct {
	t table
}

func newTableBuilder() *tableBuilder {
	return &tableBuilder{t: table{m: make(map[string]entry)}}
}

// parse normalises a pattern and returns its key and whether it is a
// wildcard.
func parsePattern(key, s string) (string, bool, error) {
	n, err := config.NormalizePattern(s)
	if err != nil {
		return "", false, fmt.Errorf("%s: %q: %v", key, s, err)
	}
	base, wild := strings.CutPrefix(n, "*.")
	return base, wild, nil
}

// set applies f to the hits of one key and stores the result.
func (b *tableBuilder) set(base string, wild bool, f func(*hits)) {
	e := b.t.m[base]
	if wild {
		f(&e.wild)
		b.t.maxWild = max(b.t.maxWild, strings.Count(base, ".")+1)
	} else {
		f(&e.exact)
	}
	b.t.m[base] = e
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

func (b *tableBuilder) build() table { return b.t }

// lookup finds every pattern naming d, which must already be normalised
// (lower-case ASCII, no trailing dot). It allocates nothing: map indexing
// with string(bytes) does not copy.
func lookup[T text](t *table, d T) match {
	var m match
	if len(t.m) == 0 {
		return m
	}
	// Wildcards, from the shortest suffix (the top-level label) to the
	// longest: a longer suffix is more specific, so it overwrites.
	labels := 0
	for i := len(d) - 1; i >= 0 && labels < t.maxWild; i-- {
		if d[i] != '.' {
			continue
		}
		labels++
		if e, ok := t.m[string(d[i+1:])]; ok {
			m.add(e.wild)
		}
	}
	if e, ok := t.m[string(d)]; ok {
		m.add(e.exact)
	}
	return m
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
// rather than compared.
func resolve[T text](p *Policy, d T) resolved {
	n := len(d)
	if n > 0 && d[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxDomain {
		return resolved{reason: ReasonDomain, label: labelDomain}
	}
	upper := false
	for i := 0; i < n; i++ {
		c := d[i]
		if c >= 0x80 {
			return resolved{reason: ReasonDomain, label: labelDomain}
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if !upper {
		return p.decideDomain(lookup(&p.table, d[:n]))
	}
	var buf [maxDomain]byte
	for i := 0; i < n; i++ {
		c := d[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return p.decideDomain(lookup(&p.table, buf[:n]))
}

// decideDomain applies deny-wins to a lookup.
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
