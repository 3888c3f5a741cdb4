package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"mellium.im/xmpp/stream"
)

// Buffer sizing. After a wait, a Reader reads into a small array of its own
// (idleRead bytes); when that read does not bring the whole next element,
// it takes a working buffer of initialBuffer bytes from a pool, which grows
// up to its current limit plus readSlack, so that a read never has less
// than readSlack bytes of room. After a large element it shrinks back, and whenever nothing is
// buffered between top-level elements the working buffer goes (see fill).
const (
	initialBuffer = 16 << 10
	// minHeaderAttrs is the attribute limit for a stream header when
	// Limits.MaxAttrs is lower: headers carry seven or more.
	minHeaderAttrs = 16
	readSlack      = 4 << 10
	shrinkAbove    = 64 << 10
)

// Reader frames a server-to-server XML stream: it reads the stream header and
// then one top-level element at a time, checking everything it passes over
// (well-formedness, XMPP's restricted XML, namespace prefixes, Limits) but
// building no tree and copying nothing: an Element's Raw is a slice of the
// bytes read.
//
// The scan is incremental: bytes are examined once however the input is
// split across reads, and a read error (a deadline, say) can be retried by
// calling the same method again. Stream errors are final: once a method has
// returned one, every later call returns it too.
//
// A Reader is not safe for concurrent use; the connection owner drives it.
type Reader struct {
	src    io.Reader
	srcErr error
	buf    []byte // len(buf) == cap(buf); data is buf[base:end]
	base   int    // first byte not yet handed out (start of the current token)
	end    int
	off    int   // scan position relative to base
	pos0   int64 // input offset of buf[0]

	lim     Limits
	initCap int
	authed  bool
	space   bool

	phase uint8
	state uint8
	err   error

	// The start tag being scanned; spans are relative to base.
	tagName  span
	tagColon int32
	sawSpace bool
	quote    byte
	valDec   bool
	valStart int32
	attrs    []attr // len MaxAttrs; the tag's are attrs[:nattr]
	nattr    int
	declFrom int32 // XML declaration: where its content starts, and
	declScan int32 // where to resume looking for "?>"

	depth int
	stack []open   // open elements below the top-level one's start tag
	ns    []nsDecl // declarations in scope, innermost last
	arena []byte   // decoded values of the current element

	hdr          *Header
	hdrQName     []byte    // name of the stream element, for its end tag
	hdrDecls     []hdrDecl // hdr.NS as bytes, for the hot path
	hdrBytes     []byte    // backing of hdrDecls' prefixes and URIs
	hdrDefault   int       // index of the default namespace in hdr.NS, or -1
	plainDefault bool      // hdr declares a default namespace that needs no fix-up
	gen          uint32    // the current element's number, for hdrDecl.used
	fixNoNS      bool      // the element relies on the header declaring no default namespace

	// Skipping an oversized stanza (see startSkip): its kind, the bytes of
	// it already dropped, and the names of its open elements.
	skipping bool
	skipKind Kind
	skipped  int
	skNames  []byte  // the names, one after the other
	skOpen   []int32 // where each begins in skNames; the last may be the start tag being read

	pooled *[]byte  // the pool's handle of buf, when it came from readBuffers
	scr    *scratch // while reading (see fill): attrs and arena are its
}

// hdrDecl is one of the header's namespace declarations, as bytes.
type hdrDecl struct {
	prefix, uri []byte
	fix         bool   // using it needs a fix-up when the element is copied
	used        uint32 // Reader.gen when it was last recorded in scratch.fix
}

// scratch is what a Reader needs only while it reads: the array it reads
// into when nothing larger is needed, the room for the current element's
// attributes and decoded values, what its top-level start tag said, and
// the Element handed out (valid until the next read, which may release
// the scratch). A Reader waiting between top-level elements with nothing
// buffered holds none (see fill): an idle stream's Reader is the size of
// its stream state only (issue 11).
type scratch struct {
	small [idleRead]byte
	attrs []attr
	arena []byte
	aNS   []attrNS // namespaces of prefixed attributes
	fix   []int    // header declarations the element relies on
	top   topInfo
	el    Element
}

var scratches = sync.Pool{New: func() any { return &scratch{arena: make([]byte, 0, 256)} }}

// acquire takes a scratch for r, which holds none and nothing buffered,
// and makes r read into its small array.
func (r *Reader) acquire() {
	s := scratches.Get().(*scratch)
	n := max(r.lim.MaxAttrs, minHeaderAttrs)
	if len(s.attrs) < n {
		s.attrs = make([]attr, n)
	}
	r.scr = s
	r.attrs, r.arena = s.attrs[:n], s.arena[:0]
	r.buf = s.small[:]
}

type span struct{ off, end int32 }

type attr struct {
	sig   uint32 // length, first and last byte of name: a cheap inequality test
	name  span
	colon int32 // relative offset of the ':' in name, or -1
	val   span  // between the quotes
	dec   bool  // contains references or literal tab/LF/CR
	known uint8 // which of the names the scanner recognises it is, or 0
}

// Attribute names recognised by the scanner (attr.known).
const (
	knownTo = 1 + iota
	knownFrom
	knownType
	knownID
	knownXmlns
	knownLang
)

type open struct {
	name  span
	nsLen int32
}

// Where a namespace name or decoded value lives.
const (
	inNone   = iota // absent
	inBuf           // span relative to base
	inArena         // span in arena
	inHeader        // index into hdrDecls
	inXML           // the xml prefix's namespace
)

type nsRef struct {
	in uint8
	s  span // for inHeader, s.off is the index
}

type attrNS struct {
	ns    nsRef
	local span
}

type nsDecl struct {
	prefix span // empty for the default namespace
	uri    nsRef
}

// topInfo is what the top-level element's start tag told us.
type topInfo struct {
	name                    span
	colon                   int32
	ns                      nsRef
	to, from, typ, id, lang nsRef
}

const (
	phaseNone   = iota // ReadHeader not called yet
	phaseHeader        // inside ReadHeader
	phaseStream        // between or inside top-level elements
	phaseClosed        // </stream:stream> seen
)

// Scanner states.
const (
	stTop       = iota // between top-level elements
	stLT               // at '<'
	stStartName        // element name of a start tag
	stInTag            // inside a start tag, between attributes
	stAttrName
	stAttrEq    // before '='
	stAttrQuote // after '=', before the quote
	stAttrVal
	stContent
	stEndName
	stEndSpace
	stCDATA
	stDocStart // header phase: optional byte order mark
	stDocDecl  // whitespace, then maybe the XML declaration
	stXMLDecl  // inside <?xml … ?>
	stProlog   // before the stream header's start tag
	stClosed
)

// Results of one scanner run.
const (
	resMore = iota
	resElement
	resSpace
	resHeader
	resEnd
)

// NewReader returns a Reader of src with the given limits (zero fields take
// their defaults). Call ReadHeader first.
func NewReader(src io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	r := &Reader{lim: lim}
	// The working buffer is no bigger than an unauthenticated stream may
	// need, and grows up to the limit in force. Until the first read into
	// the scratch's small array falls short of an element, there is none
	// (see fill).
	r.initCap = min(initialBuffer, max(lim.MaxStanzaPreAuth, lim.MaxHeader)+readSlack)
	r.Reset(src)
	return r
}

// readBuffers recycles initialBuffer-sized read buffers. A Reader reads
// into its scratch's small array whenever it has nothing buffered
// between top-level elements, and takes a buffer from the pool only when
// that read does not bring the whole next element (see fill): an idle
// stream, or one that only carries keepalives and small stanzas now and
// then, holds none; a busy one reads in bulk.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, initialBuffer); return &b }}

// An IdleWaiter is a source that can wait for input without being read:
// a Reader with nothing buffered between top-level elements calls WaitIdle
// before it reads, once it has given its working buffer back. A source that
// needs buffers of its own to read (TLS) can let them go for the wait. An
// error is returned by the Reader as a read error would be.
type IdleWaiter interface {
	WaitIdle() error
}

// idleRead is the size of a scratch's small array.
const idleRead = 512

// release gives the working buffer back (to the pool if it came from
// there), and the scratch: r holds no buffer until the next read
// (acquire). Nothing may be buffered.
func (r *Reader) release() {
	r.pos0 += int64(r.end)
	r.base, r.end, r.off = 0, 0, 0
	if r.pooled != nil {
		readBuffers.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = nil
	if s := r.scr; s != nil {
		// The last element handed out points into the buffer, the
		// scratch and the header: a pooled scratch keeps none of them.
		s.el = Element{}
		s.arena, s.aNS, s.fix = r.arena[:0], s.aNS[:0], s.fix[:0]
		r.scr, r.attrs, r.arena = nil, nil, nil
		scratches.Put(s)
	}
}

// grow moves what r holds (from base) into a working buffer of n bytes, a
// pooled one when n is initialBuffer.
func (r *Reader) grow(n int) {
	var nb []byte
	pooled := (*[]byte)(nil)
	if n == initialBuffer {
		pooled = readBuffers.Get().(*[]byte)
		nb = (*pooled)[:initialBuffer]
	} else {
		nb = make([]byte, n)
	}
	r.pos0 += int64(r.base)
	r.end = copy(nb, r.buf[r.base:r.end])
	r.base = 0
	if r.pooled != nil {
		readBuffers.Put(r.pooled)
	}
	r.buf, r.pooled = nb, pooled
}

// inSmall reports whether r reads into its scratch's small array.
func (r *Reader) inSmall() bool {
	return r.scr != nil && len(r.buf) == idleRead && &r.buf[0] == &r.scr.small[0]
}

// Reset discards all buffered input and stream state and makes r read a new
// stream from src, unauthenticated; limits and the ReportSpace setting stay.
// Its buffers go back to their pools until it reads again.
//
// For STARTTLS, call Reset with the TLS connection after <proceed/>: the
// initiating server sends nothing between <starttls/> and its TLS handshake,
// nor the receiving one after <proceed/>, so nothing legitimate is dropped.
// Bytes that are dropped were sent in the clear after the negotiation and
// must not be processed as if protected (the STARTTLS command-injection
// attack); check Buffered() == 0 before Reset to treat them as an error.
// A restart after SASL needs no Reset: call ReadHeader on the same Reader.
func (r *Reader) Reset(src io.Reader) {
	r.src, r.srcErr = src, nil
	r.base, r.end, r.off, r.pos0 = 0, 0, 0, 0
	r.authed = false
	r.phase, r.state, r.err = phaseNone, stDocStart, nil
	r.depth = 0
	r.stack, r.ns, r.arena, r.nattr = r.stack[:0], r.ns[:0], r.arena[:0], 0
	r.hdr = nil
	r.clearHeaderNS()
	r.skipping, r.skipped, r.skNames, r.skOpen = false, 0, r.skNames[:0], r.skOpen[:0]
	r.release()
	r.pos0 = 0
}

// Release gives r's working buffer back to the pool, for a stream that
// ends; a later read takes one again if it needs it.
func (r *Reader) Release() {
	r.base, r.end, r.off = 0, 0, 0
	r.release()
}

// SetAuthenticated switches between Limits.MaxStanzaPreAuth (false, the
// state after NewReader and Reset) and Limits.MaxStanza for the elements
// read from now on.
func (r *Reader) SetAuthenticated(ok bool) { r.authed = ok }

// ReportSpace makes Next return whitespace between top-level elements as
// Elements of Kind Space instead of skipping it, so that the caller sees
// keepalives (RFC 6120 §4.6.1), for instance to extend a read deadline.
func (r *Reader) ReportSpace(on bool) { r.space = on }

// Header returns the header most recently read, or nil.
func (r *Reader) Header() *Header { return r.hdr }

// Buffered returns how many bytes have been read from the source but not
// yet returned as part of a header or element.
func (r *Reader) Buffered() int { return r.end - r.base }

// InputOffset returns the offset in the input (since NewReader or Reset) of
// the first byte not yet returned: the end of the last header or element.
// (While a stanza is skipped, the bytes of it dropped count as not returned.)
func (r *Reader) InputOffset() int64 { return r.pos0 + int64(r.base) - int64(r.skipped) }

var errNoHeader = errors.New("wire: Next called before ReadHeader")

// ReadHeader reads an optional XML declaration and the stream header. Call
// it at the start of a stream and again at each restart (after TLS, with
// Reset, or after SASL success on the same Reader). Namespace declarations of
// the new header replace the old ones.
//
// The header must be <stream> in http://etherx.jabber.org/streams
// (otherwise invalid-namespace, bad-namespace-prefix when unprefixed or with
// an unbound prefix, or bad-format for another name). Its default namespace
// must be jabber:server, except with prefix-free canonicalization (RFC 6120
// §4.8.2), where it may be the stream namespace or absent (otherwise
// invalid-namespace). A header that is well-formed XML but breaks these rules
// (except an unbound prefix) is returned along with its error, so that the
// caller can answer it with a header of its own before the stream error (RFC
// 6120 §4.9.1.2); the error sticks as for any stream error.
//
// A header ending in "/>" opens and closes the stream: ReadHeader succeeds
// and the next Next returns io.EOF.
func (r *Reader) ReadHeader() (*Header, error) {
	if r.err != nil {
		return r.hdr, r.err
	}
	switch r.phase {
	case phaseClosed:
		return nil, io.EOF
	case phaseStream:
		if r.state != stTop {
			return nil, errors.New("wire: ReadHeader called inside an element")
		}
		fallthrough
	case phaseNone:
		r.phase, r.state, r.off = phaseHeader, stDocStart, 0
		r.hdr = nil
		r.clearHeaderNS()
		r.ns, r.arena = r.ns[:0], r.arena[:0]
	}
	res, err := r.run()
	if err != nil {
		return r.hdr, err
	}
	if res != resHeader {
		panic("wire: unexpected scanner result in header")
	}
	return r.hdr, r.err
}

// Next returns the next top-level element. At </stream:stream> it returns
// io.EOF; if the input ends before that, io.ErrUnexpectedEOF. Refused input
// yields an error that matches a mellium stream error with errors.Is (and
// errors.As into a stream.Error): restricted-xml, not-well-formed,
// policy-violation, bad-namespace-prefix, invalid-xml (character data or a
// stream header where an element belongs), unsupported-encoding.
//
// With Limits.MaxSkip set, a stanza over Limits.MaxStanza on an
// authenticated stream may come back with Element.Oversize set instead of a
// policy-violation: it was read to its end and dropped, and the caller
// bounces it. The bytes dropped are checked as the framer checks any
// element, except for what needs them kept: namespace prefixes, duplicate
// attributes and the MaxNamespaces bound. Those only matter for bytes that
// are copied to another stream, which dropped bytes never are; what is
// checked is what finding the stanza's end relies on (tags, quoting,
// nesting and end-tag names) and what is never XMPP (restricted XML,
// invalid characters).
//
// The Element is valid until the next call to Next, ReadHeader or Reset.
func (r *Reader) Next() (*Element, error) {
	if r.err != nil {
		return nil, r.err
	}
	switch r.phase {
	case phaseNone, phaseHeader:
		return nil, errNoHeader
	case phaseClosed:
		return nil, io.EOF
	}
	res, err := r.run()
	if err != nil {
		return nil, err
	}
	if res == resEnd {
		return nil, io.EOF
	}
	return &r.scr.el, nil
}

// limit returns the size bound of the token being scanned.
func (r *Reader) limit() int {
	switch {
	case r.phase == phaseHeader:
		return r.lim.MaxHeader
	case r.authed:
		return r.lim.MaxStanza
	}
	return r.lim.MaxStanzaPreAuth
}

// run scans, reading more input as needed, until it has a result.
func (r *Reader) run() (int, error) {
	for {
		var res int
		var err error
		if r.skipping {
			res, err = r.skipScan()
		} else {
			res, err = r.scan()
		}
		if err != nil {
			r.err = err
			return 0, err
		}
		if res != resMore {
			return res, nil
		}
		if lim := r.limit(); r.end-r.base >= lim {
			switch {
			case r.skipping:
				// What is held while skipping is one unfinished token (a
				// name at most, see skipScan), which the buffer has room
				// for up to the limit plus the read slack.
				if r.end-r.base < lim+readSlack {
					break
				}
				return 0, r.fail(condPolicyViolation, r.end-r.base, "token of %d bytes in an oversized stanza", r.end-r.base)
			case r.startSkip():
				continue
			default:
				what := "element"
				if r.phase == phaseHeader {
					what = "stream header"
				}
				// At its start: how far past the limit it was read
				// depends on how the input came.
				return 0, r.fail(condPolicyViolation, 0, "%s larger than %d bytes", what, lim)
			}
		}
		if err := r.fill(); err != nil {
			if err != io.EOF {
				return 0, err // maybe temporary: the scan resumes on the next call
			}
			if r.phase == phaseHeader && r.end == r.base {
				err = io.EOF // nothing at all was sent
			} else {
				err = io.ErrUnexpectedEOF
			}
			r.err = err
			return 0, err
		}
	}
}

// fill reads more input after buf[end], making room first.
func (r *Reader) fill() error {
	if r.srcErr != nil {
		err := r.srcErr
		if err != io.EOF {
			r.srcErr = nil
		}
		return err
	}
	switch {
	case r.base == r.end && r.off == 0 && r.state == stTop && r.phase == phaseStream:
		// Nothing buffered between top-level elements: wait for the peer
		// with no working buffer (the wait may last the idle timeout). One
		// grown for a large element is dropped: a stream that carried one
		// once does not keep it.
		r.release()
		if w, ok := r.src.(IdleWaiter); ok {
			if err := w.WaitIdle(); err != nil {
				return err
			}
		}
		r.acquire()
	case r.buf == nil:
		r.acquire() // the first read, or the first after Reset or Release
	case r.inSmall():
		// r.small takes the first read after a wait: a stream whose next
		// element came whole in it goes back to waiting with no working
		// buffer. One that needs more than that read brought is busy, or
		// sends a large element: it reads on in a working buffer. (Reading
		// on into the rest of r.small made a busy stream read a stanza or
		// less per call, each call a clock read and a wake-up of the links
		// it feeds, for as long as it stayed busy.)
		r.grow(r.initCap)
	default:
		if r.base > 0 && len(r.buf)-r.end < readSlack {
			r.pos0 += int64(r.base)
			r.end = copy(r.buf, r.buf[r.base:r.end])
			r.base = 0
		}
		if len(r.buf) > shrinkAbove && r.end-r.base < r.initCap/2 && r.state == stTop {
			r.grow(r.initCap)
		}
		if ceil := r.limit() + readSlack; len(r.buf)-r.end < readSlack && len(r.buf) < ceil {
			r.grow(min(max(2*len(r.buf), r.end+readSlack), ceil))
		}
	}
	for range 100 {
		n, err := r.src.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			if n > 0 {
				r.srcErr = err
				return nil
			}
			if err != io.EOF {
				return err
			}
			r.srcErr = err
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

// cond names the stream errors the Reader returns, so that the hot code
// passes a byte rather than a stream.Error.
type cond uint8

// MaxNamespaces bounds the namespace declarations in scope within one
// element (the stream header's apart): each name is resolved against them,
// so that this bound keeps reading linear in the element's size; beyond it
// the stream ends with policy-violation. Real stanzas keep a handful.
const MaxNamespaces = 64

const (
	condNotWellFormed cond = iota
	condRestrictedXML
	condPolicyViolation
	condBadNamespacePrefix
	condInvalidNamespace
	condInvalidXML
	condBadFormat
	condUnsupportedEncoding
)

var conds = [...]stream.Error{
	condNotWellFormed:       stream.NotWellFormed,
	condRestrictedXML:       stream.RestrictedXML,
	condPolicyViolation:     stream.PolicyViolation,
	condBadNamespacePrefix:  stream.BadNamespacePrefix,
	condInvalidNamespace:    stream.InvalidNamespace,
	condInvalidXML:          stream.InvalidXML,
	condBadFormat:           stream.BadFormat,
	condUnsupportedEncoding: stream.UnsupportedEncoding,
}

// fail builds a stream error; at is relative to base. It is kept out of
// line so that the scanner's frame stays small.
//
//go:noinline
func (r *Reader) fail(c cond, at int, format string, args ...any) error {
	return fmt.Errorf("wire: %s at input byte %d: %w", fmt.Sprintf(format, args...), r.pos0+int64(r.base+at), conds[c])
}

// lexFail turns a lexing outcome into a stream error.
//
//go:noinline
func (r *Reader) lexFail(res, at int, what string) error {
	switch res {
	case lexLong:
		return r.fail(condPolicyViolation, at, "%s too long", what)
	case lexEntity:
		return r.fail(condRestrictedXML, at, "entity reference")
	case lexBadUTF8:
		return r.fail(condNotWellFormed, at, "invalid UTF-8 or character not allowed in XML")
	}
	return r.fail(condNotWellFormed, at, "malformed %s", what)
}

// consume hands out n bytes from base.
func (r *Reader) consume(n int) {
	r.base += n
	r.off = 0
}

func (r *Reader) bytesAt(s span) []byte {
	return r.buf[r.base+int(s.off) : r.base+int(s.end)]
}

// checkXMLDecl checks the content of an XML declaration, after "<?xml" and
// one whitespace character: version 1.0, encoding UTF-8 if given,
// standalone yes or no if given, in that order.
func checkXMLDecl(s []byte) (res int, what string) {
	pseudo := [...]string{"version", "encoding", "standalone"}
	next := 0
	for first := true; ; first = false {
		i := 0
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			if next == 0 {
				return lexBad, "XML declaration without version"
			}
			return lexOK, ""
		}
		if i == 0 && !first {
			return lexBad, "malformed XML declaration"
		}
		s = s[i:]
		j := 0
		for j < len(s) && 'a' <= s[j] && s[j] <= 'z' {
			j++
		}
		name := string(s[:j])
		for next < len(pseudo) && pseudo[next] != name {
			if next == 0 {
				return lexBad, "XML declaration without version"
			}
			next++
		}
		if next == len(pseudo) {
			return lexBad, "malformed XML declaration"
		}
		next++
		s = s[j:]
		for len(s) > 0 && isSpace(s[0]) {
			s = s[1:]
		}
		if len(s) == 0 || s[0] != '=' {
			return lexBad, "malformed XML declaration"
		}
		s = s[1:]
		for len(s) > 0 && isSpace(s[0]) {
			s = s[1:]
		}
		if len(s) == 0 || s[0] != '\'' && s[0] != '"' {
			return lexBad, "malformed XML declaration"
		}
		e := bytes.IndexByte(s[1:], s[0])
		if e < 0 {
			return lexBad, "malformed XML declaration"
		}
		v := string(s[1 : 1+e])
		s = s[e+2:]
		switch name {
		case "version":
			if v != "1.0" {
				return lexBad, "XML version other than 1.0"
			}
		case "encoding":
			if !bytes.EqualFold([]byte(v), []byte("UTF-8")) {
				return lexBadUTF8, "encoding other than UTF-8"
			}
		case "standalone":
			if v != "yes" && v != "no" {
				return lexBad, "malformed XML declaration"
			}
		}
	}
}

// beginElement resets per-element state at the '<' of a top-level tag.
func (r *Reader) beginElement() {
	r.arena = r.arena[:0]
	r.scr.fix = r.scr.fix[:0]
	r.fixNoNS = false
	r.gen++
	if r.gen == 0 {
		for i := range r.hdrDecls {
			r.hdrDecls[i].used = 0
		}
		r.gen = 1
	}
}

func (r *Reader) clearHeaderNS() {
	r.hdrQName, r.hdrDefault, r.plainDefault = r.hdrQName[:0], -1, false
	r.hdrDecls, r.hdrBytes = r.hdrDecls[:0], r.hdrBytes[:0]
}

// resolve finds the namespace bound to prefix; the empty prefix asks for the
// default namespace, which may be none.
func (r *Reader) resolve(prefix []byte) (nsRef, bool) {
	switch string(prefix) {
	case "":
		// The common case, an unprefixed element: no byte comparisons.
		for i := len(r.ns) - 1; i >= 0; i-- {
			if d := &r.ns[i]; d.prefix.off == d.prefix.end {
				return d.uri, true
			}
		}
		if i := r.hdrDefault; i >= 0 {
			return r.hdrNS(i), true
		}
		// No default namespace on this stream; on a stream written by
		// Writer there is one, so the copy must undeclare it.
		r.fixNoNS = true
		return nsRef{}, true
	case "xml":
		// Bound by definition, and may only be redeclared to the same name.
		return nsRef{in: inXML}, true
	}
	for i := len(r.ns) - 1; i >= 0; i-- {
		d := &r.ns[i]
		if bytes.Equal(r.bytesAt(d.prefix), prefix) {
			return d.uri, true
		}
	}
	for i := range r.hdrDecls {
		if bytes.Equal(r.hdrDecls[i].prefix, prefix) {
			return r.hdrNS(i), true
		}
	}
	return nsRef{}, false
}

// hdrNS refers to header declaration i, recording its use by the current
// element if copying the element will need it.
func (r *Reader) hdrNS(i int) nsRef {
	if d := &r.hdrDecls[i]; d.fix && d.used != r.gen {
		d.used = r.gen
		r.scr.fix = append(r.scr.fix, i)
	}
	return nsRef{in: inHeader, s: span{off: int32(i)}}
}

var nsXMLBytes = []byte(NSXML)

func (r *Reader) nsBytes(ref nsRef) []byte {
	switch ref.in {
	case inBuf:
		return r.bytesAt(ref.s)
	case inArena:
		return r.arena[ref.s.off:ref.s.end]
	case inHeader:
		return r.hdrDecls[ref.s.off].uri
	case inXML:
		return nsXMLBytes
	}
	return nil
}

// value returns where the decoded value of a lives, decoding into the arena
// when needed.
func (r *Reader) value(a *attr) nsRef {
	if !a.dec {
		return nsRef{in: inBuf, s: a.val}
	}
	return r.decode(a)
}

func (r *Reader) decode(a *attr) nsRef {
	start := len(r.arena)
	r.arena = appendDecoded(r.arena, r.bytesAt(a.val), true)
	return nsRef{in: inArena, s: span{int32(start), int32(len(r.arena))}}
}

// endStartTag checks a complete start tag ending just before end (relative
// to base): attributes, namespace declarations and prefixes, depth. It
// returns resMore to continue scanning, or a result for the header or a
// self-closed top-level element.
func (r *Reader) endStartTag(end int, selfClose bool) (int, error) {
	b := r.buf[r.base:r.end]
	attrs := r.attrs[:r.nattr]
	t := &r.scr.top
	top := r.depth == 0 && r.phase == phaseStream
	if top {
		t.to, t.from, t.typ, t.id, t.lang = nsRef{}, nsRef{}, nsRef{}, nsRef{}, nsRef{}
	}
	// One pass for duplicates, the routing attributes of a top-level
	// element, and namespace declarations, which must come first: they
	// apply to the tag's own names.
	nsLen := len(r.ns)
	prefixed := 0
	var seen uint64 // a Bloom filter of the signatures so far
	for i := range attrs {
		a := &attrs[i]
		if bit := uint64(1) << (a.sig * 0x9E3779B1 >> 26); seen&bit == 0 {
			seen |= bit
		} else {
			name := b[a.name.off:a.name.end]
			for j := range i {
				if attrs[j].sig == a.sig && bytes.Equal(name, b[attrs[j].name.off:attrs[j].name.end]) {
					return 0, r.fail(condNotWellFormed, int(a.name.off), "duplicate attribute %s", name)
				}
			}
		}
		var prefix span
		// The names the scanner recognised need no comparing.
		switch a.known {
		case knownTo:
			if top {
				t.to = r.value(a)
			}
			continue
		case knownFrom:
			if top {
				t.from = r.value(a)
			}
			continue
		case knownType:
			if top {
				t.typ = r.value(a)
			}
			continue
		case knownID:
			if top {
				t.id = r.value(a)
			}
			continue
		case knownLang:
			prefixed++
			if top {
				t.lang = r.value(a)
			}
			continue
		}
		name := b[a.name.off:a.name.end]
		switch {
		case a.known == knownXmlns:
		case a.colon < 0:
			if a.sig == xmlnsSig && string(name) == "xmlns" {
				break // the default namespace
			}
			if top {
				// The signature rules out most names without comparing
				// bytes.
				switch a.sig {
				case sigTo:
					if string(name) == "to" {
						t.to = r.value(a)
					}
				case sigID:
					if string(name) == "id" {
						t.id = r.value(a)
					}
				case sigFrom:
					if string(name) == "from" {
						t.from = r.value(a)
					}
				case sigType:
					if string(name) == "type" {
						t.typ = r.value(a)
					}
				}
			}
			continue
		case a.colon-a.name.off == 5 && string(b[a.name.off:a.colon]) == "xmlns":
			prefix = span{a.colon + 1, a.name.end}
		default:
			prefixed++
			if top && a.sig == sigLang && string(name) == "xml:lang" {
				t.lang = r.value(a)
			}
			continue
		}
		uri := r.value(a)
		ub := r.nsBytes(uri)
		switch p := string(r.bytesAt(prefix)); {
		case p == "xmlns":
			return 0, r.fail(condBadNamespacePrefix, int(a.name.off), "declaration of the xmlns prefix")
		case p == "xml" && string(ub) != NSXML,
			p != "xml" && (string(ub) == NSXML || string(ub) == nsXMLNS):
			return 0, r.fail(condBadNamespacePrefix, int(a.name.off), "misuse of the xml namespace")
		case p != "" && len(ub) == 0:
			return 0, r.fail(condBadNamespacePrefix, int(a.name.off), "prefix declared with an empty namespace")
		}
		if len(r.ns) >= MaxNamespaces {
			return 0, r.fail(condPolicyViolation, int(a.name.off), "more than %d namespace declarations in scope", MaxNamespaces)
		}
		r.ns = append(r.ns, nsDecl{prefix: prefix, uri: uri})
	}

	var prefix []byte
	if r.tagColon >= 0 {
		prefix = r.bytesAt(span{r.tagName.off, r.tagColon})
		if string(prefix) == "xmlns" {
			return 0, r.fail(condBadNamespacePrefix, int(r.tagName.off), "element with the xmlns prefix")
		}
	}
	var ens nsRef
	ok := true
	if i := r.hdrDefault; prefix == nil && len(r.ns) == nsLen && i >= 0 && !r.hdrDecls[i].fix {
		// The common case: an unprefixed element in the stream's default
		// namespace, with no declaration in scope to look through.
		ens = nsRef{in: inHeader, s: span{off: int32(i)}}
		for _, d := range r.ns {
			if d.prefix.off == d.prefix.end {
				ens, ok = r.resolve(nil)
				break
			}
		}
	} else {
		ens, ok = r.resolve(prefix)
	}
	if !ok {
		return 0, r.fail(condBadNamespacePrefix, int(r.tagName.off), "unbound prefix %q", prefix)
	}

	if prefixed > 0 {
		aNS := r.scr.aNS[:0]
		for i := range attrs {
			a := &attrs[i]
			if a.colon < 0 {
				continue
			}
			ap := r.bytesAt(span{a.name.off, a.colon})
			if string(ap) == "xmlns" {
				continue
			}
			ref, ok := r.resolve(ap)
			if !ok {
				return 0, r.fail(condBadNamespacePrefix, int(a.name.off), "unbound prefix %q", ap)
			}
			if prefixed == 1 {
				break
			}
			// Two attributes with the same local name and namespace are
			// duplicates even when their prefixes differ.
			local := span{a.colon + 1, a.name.end}
			for _, o := range aNS {
				if bytes.Equal(r.bytesAt(o.local), r.bytesAt(local)) && bytes.Equal(r.nsBytes(o.ns), r.nsBytes(ref)) {
					return 0, r.fail(condNotWellFormed, int(a.name.off), "duplicate attribute")
				}
			}
			aNS = append(aNS, attrNS{ref, local})
		}
		r.scr.aNS = aNS
	}

	if r.depth+1 > r.lim.MaxDepth {
		return 0, r.fail(condPolicyViolation, int(r.tagName.off), "elements nested deeper than %d", r.lim.MaxDepth)
	}
	if r.phase == phaseHeader {
		return r.endHeader(ens, end, selfClose)
	}
	if top {
		t.name, t.colon, t.ns = r.tagName, r.tagColon, ens
		if string(r.nsBytes(ens)) == NSStream && string(r.localName()) == "stream" {
			return 0, r.fail(condInvalidXML, int(r.tagName.off)-1, "stream header where an element was expected (call ReadHeader for a restart)")
		}
	}
	if selfClose {
		r.ns = r.ns[:nsLen]
		if r.depth == 0 {
			r.setElement(end)
			return resElement, nil
		}
		r.state = stContent
		return resMore, nil
	}
	r.stack = append(r.stack, open{name: r.tagName, nsLen: int32(nsLen)})
	r.depth++
	r.state = stContent
	return resMore, nil
}

// Signatures of the attribute names the framer looks for.
const (
	xmlnsSig = 5 | 'x'<<16 | 's'<<24
	sigTo    = 2 | 't'<<16 | 'o'<<24
	sigID    = 2 | 'i'<<16 | 'd'<<24
	sigFrom  = 4 | 'f'<<16 | 'm'<<24
	sigType  = 4 | 't'<<16 | 'e'<<24
	sigLang  = 8 | 'x'<<16 | 'g'<<24
)

func attrSig(name []byte) uint32 {
	return uint32(len(name))&0xffff | uint32(name[0])<<16 | uint32(name[len(name)-1])<<24
}

func (r *Reader) localName() []byte {
	if r.tagColon < 0 {
		return r.bytesAt(r.tagName)
	}
	return r.bytesAt(span{r.tagColon + 1, r.tagName.end})
}

// setElement fills the scratch's Element with the top-level element ending at end and hands
// its bytes out.
func (r *Reader) setElement(end int) {
	t := &r.scr.top
	e := &r.scr.el
	raw := r.buf[r.base : r.base+end]
	e.Raw = raw
	if t.colon >= 0 {
		e.Prefix = raw[t.name.off:t.colon]
		e.Local = raw[t.colon+1 : t.name.end]
	} else {
		e.Prefix = nil
		e.Local = raw[t.name.off:t.name.end]
	}
	e.NS = r.nsBytes(t.ns)
	e.To, e.From, e.Type, e.ID, e.Lang = r.nsBytes(t.to), r.nsBytes(t.from), r.nsBytes(t.typ), r.nsBytes(t.id), r.nsBytes(t.lang)
	e.Kind = classify(e.NS, e.Prefix, e.Local)
	e.nameEnd = int(t.name.end)
	e.fix, e.noNS = r.scr.fix, r.fixNoNS
	e.hdr = r.hdr
	e.Oversize = 0
	r.consume(end)
	r.state = stTop
}

// startSkip is called when the top-level element being read has grown past
// MaxStanza. If it may be skipped (see Limits.MaxSkip), it keeps what
// Element.Oversize promises and what skipScan needs, hands the scan over to
// skipScan, and reports true; otherwise the stream fails as it would
// without MaxSkip.
//
// What is kept does not depend on the buffer, which skipScan empties as it
// goes: the routing attributes are copied into the arena (which beginElement
// empties), and the names of the open elements into skNames, so that end
// tags can still be matched. The scan resumes where scan stopped, in the
// same state: skipScan uses the same states with the same meaning.
func (r *Reader) startSkip() bool {
	if r.lim.MaxSkip <= r.lim.MaxStanza || !r.authed || r.phase != phaseStream || r.depth == 0 {
		// Off, or the top-level start tag is not complete: without it the
		// element cannot be bounced.
		return false
	}
	t := &r.scr.top
	var prefix, local []byte
	if t.colon >= 0 {
		prefix, local = r.bytesAt(span{t.name.off, t.colon}), r.bytesAt(span{t.colon + 1, t.name.end})
	} else {
		local = r.bytesAt(t.name)
	}
	kind := classify(r.nsBytes(t.ns), prefix, local)
	if kind != Message && kind != Presence && kind != IQ {
		return false
	}
	facts := [...]*nsRef{&t.to, &t.from, &t.typ, &t.id}
	for _, f := range facts {
		if len(r.nsBytes(*f)) > maxFact {
			return false
		}
	}
	for _, f := range facts {
		if f.in == inBuf {
			start := len(r.arena)
			r.arena = append(r.arena, r.bytesAt(f.s)...)
			*f = nsRef{in: inArena, s: span{int32(start), int32(len(r.arena))}}
		}
	}

	r.skNames, r.skOpen = r.skNames[:0], r.skOpen[:0]
	for _, o := range r.stack {
		r.pushName(r.bytesAt(o.name))
	}
	switch r.state {
	case stInTag, stAttrName, stAttrEq, stAttrQuote, stAttrVal:
		// Inside a start tag, whose name skipScan pushes when it reads one.
		r.pushName(r.bytesAt(r.tagName))
	}
	// Nothing else of the element's is needed: namespaces are not checked
	// in what is skipped, and the element is not handed out.
	r.stack, r.ns = r.stack[:0], r.ns[:0]
	r.skipKind, r.skipped, r.skipping = kind, 0, true
	return true
}

func (r *Reader) pushName(name []byte) {
	r.skOpen = append(r.skOpen, int32(len(r.skNames)))
	r.skNames = append(r.skNames, name...)
}

var stanzaLocal = [...][]byte{Message: []byte("message"), Presence: []byte("presence"), IQ: []byte("iq")}

var nsServerBytes = []byte(NSServer)

// endSkip fills the scratch's Element with the skipped stanza, which ends at end, and hands
// its last bytes out.
func (r *Reader) endSkip(end int) {
	t := &r.scr.top
	local := stanzaLocal[r.skipKind]
	r.scr.el = Element{
		Kind:     r.skipKind,
		Local:    local[:len(local):len(local)],
		NS:       nsServerBytes[:len(NSServer):len(NSServer)],
		To:       r.nsBytes(t.to),
		From:     r.nsBytes(t.from),
		Type:     r.nsBytes(t.typ),
		ID:       r.nsBytes(t.id),
		Oversize: int64(r.skipped) + int64(end),
		// hdr stays nil: nothing of the header's is to be added to
		// nothing, nor a language (AppendTo, NeedsFixup).
	}
	r.consume(end)
	r.skipping, r.skipped = false, 0
	r.skNames, r.skOpen = r.skNames[:0], r.skOpen[:0]
	r.state = stTop
}

func (r *Reader) setSpace(n int) {
	r.scr.el = Element{Kind: Space, Raw: r.buf[r.base : r.base+n], hdr: r.hdr}
	r.consume(n)
}

func classify(ns, prefix, local []byte) Kind {
	switch string(ns) {
	case NSServer:
		if prefix != nil {
			return Other
		}
		switch string(local) {
		case "message":
			return Message
		case "presence":
			return Presence
		case "iq":
			return IQ
		}
	case NSDialback:
		switch string(local) {
		case "result":
			return DialbackResult
		case "verify":
			return DialbackVerify
		}
	case NSStream:
		switch string(local) {
		case "features":
			return Features
		case "error":
			return StreamError
		}
	}
	return Other
}

// intern returns common header values without allocating.
func intern(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case NSServer:
		return NSServer
	case NSStream:
		return NSStream
	case NSDialback:
		return NSDialback
	case NSClient:
		return NSClient
	case "stream":
		return "stream"
	case "db":
		return "db"
	case "1.0":
		return "1.0"
	case "en":
		return "en"
	}
	return string(b)
}

// endHeader turns the complete stream start tag into r.hdr.
func (r *Reader) endHeader(ens nsRef, end int, selfClose bool) (int, error) {
	// A header that breaks XMPP's rules but not XML's is still returned, so
	// that the caller can answer with a header before the stream error.
	var err error
	switch {
	case string(r.nsBytes(ens)) != NSStream && r.tagColon < 0:
		err = r.fail(condBadNamespacePrefix, int(r.tagName.off), "stream element not in the stream namespace")
	case string(r.nsBytes(ens)) != NSStream:
		err = r.fail(condInvalidNamespace, int(r.tagName.off), "stream element not in the stream namespace")
	case string(r.localName()) != "stream":
		err = r.fail(condBadFormat, int(r.tagName.off), "<%s> instead of a stream header", r.bytesAt(r.tagName))
	}
	h := &Header{}
	if r.tagColon >= 0 {
		h.Prefix = intern(r.bytesAt(span{r.tagName.off, r.tagColon}))
	}
	for i := range r.nattr {
		a := &r.attrs[i]
		var dst *string
		switch string(r.bytesAt(a.name)) {
		case "to":
			dst = &h.To
		case "from":
			dst = &h.From
		case "id":
			dst = &h.ID
		case "version":
			dst = &h.Version
		case "xml:lang":
			dst = &h.Lang
		default:
			continue
		}
		*dst = intern(r.nsBytes(r.value(a)))
	}
	r.clearHeaderNS()
	r.hdrQName = append(r.hdrQName, r.bytesAt(r.tagName)...)
	h.NS = make([]NS, 0, len(r.ns))
	// The byte forms of the declarations share one reused buffer.
	for _, d := range r.ns {
		ns := NS{Prefix: intern(r.bytesAt(d.prefix)), URI: intern(r.nsBytes(d.uri))}
		h.NS = append(h.NS, ns)
		if ns.Prefix == "" {
			r.hdrDefault = len(h.NS) - 1
		}
		r.hdrBytes = append(append(r.hdrBytes, ns.Prefix...), ns.URI...)
		r.hdrDecls = append(r.hdrDecls, hdrDecl{fix: !standardDecl(ns.Prefix, ns.URI)})
	}
	off := 0
	for i, ns := range h.NS {
		p, u := off+len(ns.Prefix), off+len(ns.Prefix)+len(ns.URI)
		r.hdrDecls[i].prefix, r.hdrDecls[i].uri = r.hdrBytes[off:p:p], r.hdrBytes[p:u:u]
		off = u
	}
	r.plainDefault = r.hdrDefault >= 0 && !r.hdrDecls[r.hdrDefault].fix
	r.ns = r.ns[:0]
	r.hdr = h
	r.consume(end)
	r.phase, r.state = phaseStream, stTop
	if selfClose {
		r.phase, r.state = phaseClosed, stClosed
	}
	// Besides jabber:server, prefix-free canonicalization leaves the
	// default namespace undeclared or the stream namespace, and each
	// element declares its own (RFC 6120 §4.8.2).
	if def := h.Default(); err == nil && def != NSServer && def != NSStream && def != "" {
		err = r.fail(condInvalidNamespace, 0, "default namespace %q", def)
	}
	r.err = err
	return resHeader, nil
}
