package routing

import (
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/policy"
)

// Face is the side of the relay a stream belongs to; it is policy's Face so
// that decisions and audit records need no translation.
type Face = policy.Face

// Stanza is one stanza in transit through the relay: the facts of its start
// tag that routing decides on, and the bytes to write to the next hop.
//
// A Stanza is lent, never given: Router.Route and Link.Enqueue do not keep
// st or the bytes it points to after they return. A link copies the bytes
// into its own buffer and the facts into a record of its own, so the stream
// that read the stanza can reuse both for the next one. ID is lent the same
// way: it may point into a buffer that is reused once the call returns (the
// stream's read buffer, a link's batch), so whoever keeps it keeps a copy
// (strings.Clone), not the string. The other strings are the stanza's own.
type Stanza struct {
	Kind policy.Kind
	// Type, From, To and ID are the start tag's attributes, entity-decoded.
	Type, From, To, ID string
	// FromDomain and ToDomain are the domainparts of From and To in the
	// relay's normal form (lower-case ASCII).
	FromDomain, ToDomain string
	// Raw is the element as read (or as the relay made it): what policy
	// measures, and what is written to the next hop unless Body is set.
	Raw []byte
	// Oversize, when not zero, is the size of a stanza larger than the
	// stream's limit, which the framer skipped rather than read (Raw is
	// nil): it is refused by the size rule and bounced to its sender,
	// never forwarded.
	Oversize int
	// Body, if not nil, appends the bytes to write to the next hop: Raw
	// with the fix-ups the new stream needs (namespaces, xml:lang), written
	// straight into the link's buffer.
	Body Appender
	// Face is where the stanza entered the relay.
	Face Face
	// TLS and Auth describe the stream the stanza arrived on, for policy.
	TLS  bool
	Auth policy.Auth
	// Own marks a stanza the relay made itself (a bounce, an answer to a
	// ping): it is routed like any other, but not counted as accepted, not
	// subject to policy, and never answered with an error.
	Own bool
	// Answer marks the relay's answer to a stanza addressed to it (an
	// XEP-0199 ping to a domain it speaks as): Route counts it as answered
	// and treats it as Own.
	Answer bool
	// Shard is the number of the stream that read the stanza: counters add
	// to its shard (see Counter).
	Shard uint32
	// Via, if not nil, is what the reading stream keeps for the stanza's
	// pair between its stanzas (see Via). Only the stream's owner goroutine
	// may use it.
	Via *Via
	// Defer lets the link leave its writer asleep: the stream that read the
	// stanza wakes the link in st.Via.Link (Link.Wake) before it waits for more
	// input (before it reads its socket again), so that the stanzas of one
	// read go out in one write instead of one wake-up (and system call)
	// each. A link's writer takes such stanzas only when woken.
	Defer bool
	// Received is when the relay read the stanza.
	Received time.Time
	// Attempts counts the links that took the stanza and retired before
	// writing it (see Router.Settle with Retired).
	Attempts int
	// MaxWait is the longest Link.Enqueue may wait for room in a working
	// link's full buffer before refusing with ErrQueueFull (zero: no wait).
	// The inbound stream that read the stanza sets it from its stall
	// budget; Waited is what Enqueue actually waited, for that budget.
	MaxWait, Waited time.Duration
}

// Appender writes a stanza's bytes for the next hop at the end of dst.
type Appender interface {
	AppendTo(dst []byte) []byte
}

// Bytes returns the bytes to write to the next hop, appended to dst.
func (st *Stanza) Bytes(dst []byte) []byte {
	if st.Body != nil {
		return st.Body.AppendTo(dst)
	}
	return append(dst, st.Raw...)
}

// Fate is what became of stanzas a link had taken (Router.Settle).
type Fate uint8

const (
	// Sending: the link is about to write them. Reported before the write,
	// not after, because the answer to an IQ request can cross the relay
	// before the link has finished its write.
	Sending Fate = iota
	// Written: the link handed them to its connection, for good: the
	// stream has no acknowledgements (XEP-0198), so that is where the
	// relay's responsibility ends. They count as delivered.
	Written
	// Failed: the link could not write them; they are bounced with the
	// error given.
	Failed
	// Retired: the link retired (idle, its peer closed a working stream)
	// before writing them; they are routed again over a new link.
	Retired
	// Down: the link of the pair ended after it had been up (no stanzas):
	// with an error, the IQ requests it wrote that are still unanswered get
	// one; without (idle, shutdown), they are forgotten.
	Down
	// Acked: the peer acknowledged them (XEP-0198 on the stream): they
	// count as delivered, and as acknowledged. On such a stream the link
	// reports Sending before the write and Acked once the peer has them;
	// what it wrote and the peer never acknowledged it reports Retired
	// (sent again over a new stream) or Failed.
	Acked
)

// Pair is an outbound stream's domain pair: stanzas from From (a domain the
// relay speaks as) to To.
type Pair struct {
	From, To string
}

func (p Pair) String() string { return p.From + "→" + p.To }

// DeliveryError says why stanzas could not be delivered to a domain, in the
// terms of a stanza error (RFC 6120 §10.4.3): Condition is
// remote-server-not-found when the domain does not resolve or offers no S2S
// service, remote-server-timeout when it resolved but could not be reached
// or authenticated. The network layer wraps its errors in one.
type DeliveryError struct {
	Condition stanza.Condition
	Err       error
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// NotFound wraps err as a remote-server-not-found delivery failure.
func NotFound(err error) error {
	return &DeliveryError{Condition: stanza.RemoteServerNotFound, Err: err}
}

// Timeout wraps err as a remote-server-timeout delivery failure.
func Timeout(err error) error {
	return &DeliveryError{Condition: stanza.RemoteServerTimeout, Err: err}
}

// SizeError is the cause of a bounce for a stanza larger than the next
// hop accepts (its XEP-0478 max-bytes, or the relay's own limit).
type SizeError struct {
	Size, Max int
	Domain    string // the next hop's domain
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("the stanza is %d bytes; the server of %s accepts at most %d", e.Size, e.Domain, e.Max)
}

// TooLarge is the delivery failure of a stanza of size bytes for a next hop
// that accepts at most max: policy-violation, which the sender may fix
// (type modify).
func TooLarge(domain string, size, max int) error {
	return &DeliveryError{Condition: stanza.PolicyViolation, Err: &SizeError{Size: size, Max: max, Domain: domain}}
}

// ErrQueueFull is returned by Link.Enqueue when the link's queue bounds
// (limits.queue_stanzas, limits.queue_bytes) are reached.
var ErrQueueFull = errors.New("queue full")

// ErrClosed is returned by Link.Enqueue when the link is shutting down.
var ErrClosed = errors.New("link closed")

// stanzaError turns a delivery failure into the stanza error of the bounce.
func stanzaError(err error) stanza.Error {
	var se *SizeError
	if errors.As(err, &se) {
		return stanza.Error{Type: stanza.Modify, Condition: stanza.PolicyViolation, Text: map[string]string{"": se.Error()}}
	}
	var de *DeliveryError
	if errors.As(err, &de) {
		typ := stanza.Wait
		switch de.Condition {
		case stanza.RemoteServerNotFound, stanza.NotAllowed, stanza.PolicyViolation:
			typ = stanza.Cancel
		}
		return stanza.Error{Type: typ, Condition: de.Condition, Text: map[string]string{"": de.Err.Error()}}
	}
	if errors.Is(err, ErrQueueFull) {
		return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint,
			Text: map[string]string{"": "relay queue full"}}
	}
	return stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout,
		Text: map[string]string{"": fmt.Sprint(err)}}
}

// Via is what a reading stream keeps for one of its domain pairs, from one
// of the pair's stanzas to the next (Stanza.Via): the link they went to,
// and which of the pair's domains are internal under the table the router
// had then, so that Route looks neither up again while both hold. Route
// reads and writes it; the stream only reads Link (to wake it).
type Via struct {
	// Link is the link of the pair's last stanza; Route tries it before
	// asking the Dialer, and stores the link it used.
	Link Link

	table        *Table // fromIn and toIn hold under this table
	fromIn, toIn bool
	// remote is the pair's remote domain under the policy it was resolved
	// by; Route resolves it again when the policy or the table changes.
	remote policy.Remote
}
