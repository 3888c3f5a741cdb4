package wire

// Defaults used for zero fields of Limits.
const (
	// DefaultMaxStanza matches Prosody's default s2s_stanza_size_limit, so
	// that the relay passes everything a Prosody peer accepts.
	DefaultMaxStanza = 512 << 10
	// DefaultMaxStanzaPreAuth is plenty for stream features, TLS, SASL and
	// dialback elements.
	DefaultMaxStanzaPreAuth = 16 << 10
	DefaultMaxDepth         = 64
	DefaultMaxAttrs         = 32
	DefaultMaxName          = 256
	DefaultMaxHeader        = 4 << 10
)

// RecommendedMaxSkip is a value for Limits.MaxSkip, which is not defaulted:
// its zero value keeps skipping off. Skipping reads an oversized stanza
// without keeping it, so the cap bounds time and bandwidth, not memory; 16
// MiB is 32 times Prosody's default stanza limit.
const RecommendedMaxSkip = 16 << 20

// maxFact bounds each attribute kept of a skipped stanza (to, from, type,
// id): 3071 bytes is the longest JID (RFC 7622 §3.1).
const maxFact = 3071

// Limits bound what a peer can make a Reader hold. Exceeding any of them
// returns a policy-violation stream error, except that a stanza larger than
// MaxStanza can be skipped instead (MaxSkip). A zero (or negative) field
// takes its Default… value (MaxSkip: off), and none may exceed 1 GiB; the
// caller fills the struct from configuration.
//
// Memory per Reader stays below max(MaxStanza, MaxHeader) plus a few KiB of
// read slack, plus the bookkeeping bounded by MaxDepth, MaxAttrs and MaxName,
// whatever the peer sends; skipping adds nothing to the buffer.
type Limits struct {
	// MaxStanza is the largest top-level element, in bytes from its '<' to
	// the '>' of its end tag, accepted once the stream is authenticated
	// (see Reader.SetAuthenticated).
	MaxStanza int
	// MaxStanzaPreAuth replaces MaxStanza until then.
	MaxStanzaPreAuth int
	// MaxDepth is the deepest element nesting; the top-level element is at
	// depth 1.
	MaxDepth int
	// MaxAttrs is the most attributes (namespace declarations included) on
	// one start tag. A stream header may have up to 16 whatever this says.
	MaxAttrs int
	// MaxName is the longest element, attribute or entity name in bytes,
	// prefix included.
	MaxName int
	// MaxHeader bounds the bytes read for a stream header: whitespace, the
	// XML declaration and the <stream:stream …> start tag.
	MaxHeader int
	// MaxSkip, when larger than MaxStanza, turns the policy-violation for
	// a stanza over MaxStanza on an authenticated stream into a skip: the
	// Reader reads the stanza to its end without keeping it and returns it
	// as an Element with Oversize set, which the caller can bounce, and the
	// stream goes on. Skipping applies to a message, presence or iq in
	// jabber:server whose start tag fits in MaxStanza and whose to, from,
	// type and id are at most 3071 bytes each (as a JID); anything else over
	// MaxStanza, and any stanza over MaxSkip bytes, still fails the stream.
	// Zero (the default) never skips; see RecommendedMaxSkip.
	MaxSkip int
}

// maxLimit keeps offsets within an element in 32 bits.
const maxLimit = 1 << 30

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
		*v = min(*v, maxLimit)
	}
	def(&l.MaxStanza, DefaultMaxStanza)
	def(&l.MaxStanzaPreAuth, DefaultMaxStanzaPreAuth)
	def(&l.MaxDepth, DefaultMaxDepth)
	def(&l.MaxAttrs, DefaultMaxAttrs)
	def(&l.MaxName, DefaultMaxName)
	def(&l.MaxHeader, DefaultMaxHeader)
	l.MaxSkip = min(max(l.MaxSkip, 0), maxLimit)
	return l
}
