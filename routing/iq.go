package routing

import (
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/policy"
)

// pendingIQs remembers the IQ requests (get, set) each link wrote and whose
// answer has not crossed the relay yet, so that when the link dies the
// requesters get an error instead of waiting forever (RFC 6120 §8.2.3: an
// IQ request always gets a result or an error). Answers travel on another
// stream than requests (one stream per direction), so they are matched here,
// where both directions meet.
type pendingIQs struct {
	mu     sync.Mutex
	byPair map[Pair]map[iqKey]*Stanza
}

// iqKey identifies a request by the addresses and id its answer will carry
// swapped: the addresses in their normal form (jidKey), since the answer
// may write them differently ("bob@example.org/res" answering a request to
// "Bob@Example.ORG/res"), the id as written.
type iqKey struct{ from, to, id string }

func keyOf(from, to, id string) iqKey { return iqKey{jidKey(from), jidKey(to), id} }

const (
	// maxPendingPerPair bounds the requests remembered per link; beyond
	// it new requests are not tracked (they still cross).
	maxPendingPerPair = 4096
	// pendingFor is how long a request is remembered: after that its
	// requester has long given up and an error would only be noise.
	pendingFor = 2 * time.Minute
)

func (p *pendingIQs) add(st *Stanza, now time.Time) {
	pair := Pair{From: st.FromDomain, To: st.ToDomain}
	id := strings.Clone(st.ID) // lent (Stanza)
	key := keyOf(st.From, st.To, id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byPair == nil {
		p.byPair = map[Pair]map[iqKey]*Stanza{}
	}
	m := p.byPair[pair]
	if m == nil {
		m = map[iqKey]*Stanza{}
		p.byPair[pair] = m
	}
	if len(m) >= maxPendingPerPair {
		for k, old := range m {
			if now.Sub(old.Received) > pendingFor {
				delete(m, k)
			}
		}
		if len(m) >= maxPendingPerPair {
			return
		}
	}
	// The bounce needs the start tag only; the payload is not kept.
	m[key] = &Stanza{Kind: st.Kind, Type: st.Type, From: st.From, To: st.To, ID: id,
		FromDomain: st.FromDomain, ToDomain: st.ToDomain, Face: st.Face, Received: now}
}

// answered forgets the request an IQ result or error answers.
func (p *pendingIQs) answered(st *Stanza) {
	pair := Pair{From: st.ToDomain, To: st.FromDomain}
	key := keyOf(st.To, st.From, st.ID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.byPair[pair]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(p.byPair, pair)
		}
	}
}

// forget drops a request that is being bounced instead.
func (p *pendingIQs) forget(st *Stanza) {
	pair := Pair{From: st.FromDomain, To: st.ToDomain}
	key := keyOf(st.From, st.To, st.ID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.byPair[pair]; m != nil {
		delete(m, key)
	}
}

// take returns and forgets the requests still pending on a link, those
// recent enough to be worth an error.
func (p *pendingIQs) take(pair Pair, now time.Time) []*Stanza {
	p.mu.Lock()
	m := p.byPair[pair]
	delete(p.byPair, pair)
	p.mu.Unlock()
	var out []*Stanza
	for _, st := range m {
		if now.Sub(st.Received) <= pendingFor {
			out = append(out, st)
		}
	}
	return out
}

// jidKey returns the form of an address that requests and answers are
// matched by: its normal form by mellium.im/xmpp/jid (RFC 7622: the
// localpart case- and width-mapped, the domainpart in lower-case U-labels
// without a final dot, the resourcepart as written but for Unicode
// normalisation), so that "Bob@Example.ORG/res" and "bob@example.org/res",
// or a domain in its A-label and U-label forms, are one address. A string
// that is not a JID is its own key. Addresses already in normal form, nearly
// all of them, are returned as they are, without allocating.
func jidKey(s string) string {
	if plainJID(s) {
		return s
	}
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.String()
}

// plainJID reports whether s is printable ASCII without spaces, with a
// localpart without upper-case letters and a plain domainpart (plainDomain).
// jid.Parse either refuses such a string or gives it back unchanged
// (FuzzJIDKey checks it), so it is its own key.
func plainJID(s string) bool {
	bare, res, _ := strings.Cut(s, "/")
	for i := 0; i < len(res); i++ {
		if c := res[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	domain := bare
	if local, d, ok := strings.Cut(bare, "@"); ok {
		for i := 0; i < len(local); i++ {
			if c := local[i]; c <= ' ' || c >= 0x7f || ('A' <= c && c <= 'Z') {
				return false
			}
		}
		domain = d
	}
	return plainDomain(domain)
}

// plainDomain reports whether d is made of lower-case letters, digits,
// hyphens and dots, has no final dot (jid.Parse removes it), and no label
// with hyphens in its third and fourth places: A-labels ("xn--"), which
// jid.Parse turns into U-labels, and others the IDNA rules refuse.
func plainDomain(d string) bool {
	if d == "" || d[len(d)-1] == '.' {
		return false
	}
	label := 0 // bytes of the current label so far
	for i := 0; i < len(d); i++ {
		switch c := d[i]; {
		case c == '.':
			label = 0
			continue
		case c == '-':
			if label == 3 && d[i-1] == '-' {
				return false
			}
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		default:
			return false
		}
		label++
	}
	return true
}

func isRequest(st *Stanza) bool {
	return st.Kind == policy.IQ && (st.Type == "get" || st.Type == "set")
}

func isAnswer(st *Stanza) bool {
	return st.Kind == policy.IQ && (st.Type == "result" || st.Type == "error")
}

// linkDown tells the router that the link of pair ended after it had been
// up. If it died (err not nil), the IQ requests it wrote that are still
// unanswered get a remote-server-timeout error, since their answers can no
// longer be relied on; after a clean close (err nil: idle, shutdown) they are
// forgotten.
func (r *Router) linkDown(pair Pair, err error) {
	pending := r.iqs.take(pair, r.now())
	if err == nil {
		return
	}
	for _, st := range pending {
		e := stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout,
			Text: map[string]string{"": "the stream to " + pair.To + " ended before the answer came: " + err.Error()}}
		raw, ok := r.bouncer(nil, st, publicError(st, e, r.policy.Load().Explain(), ""))
		if !ok {
			continue
		}
		r.stats.PendingIQErrors.AddAt(st.Shard, 1)
		r.Route(errorReply(st, raw))
	}
}
