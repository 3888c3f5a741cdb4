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

// Limits bound what a peer can make a Reader hold. Exceeding any of them
// returns a policy-violation stream error. A zero (or negative) field takes
// its Default… value, and none may exceed 1 GiB; the caller fills the struct
// from configuration.
//
// Memory per Reader stays below max(MaxStanza, MaxHeader) plus a few KiB of
// read slack, plus the bookkeeping bounded by MaxDepth and MaxAttrs, whatever
// the peer sends.
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
	return l
}
