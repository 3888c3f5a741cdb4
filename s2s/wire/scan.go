package wire

import (
	"bytes"
	"math/bits"
	"unicode/utf8"
)

// Bytes replicated across a word, for the word-at-a-time loops.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// load64 reads eight bytes little-endian with one bounds check; the
// compiler turns it into a single load.
func load64(b []byte, p int) uint64 {
	b = b[p : p+8 : p+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// skipText returns the index of the first byte from p that needs attention
// in character data: below 0x20 (tab, LF and CR included; the caller lets
// them through), from 0x80 up, '<', '&' or ']'; or len(b).
//
// The first 32 bytes go eight at a time: a byte equal to c makes a zero
// byte in y = x^c, and (y-lo8)&^y marks zero bytes in their high bit;
// x-0x20 (per byte) marks bytes below 0x20, and x itself those from 0x80.
// Borrows can only mark bytes above one that truly qualifies, so the
// lowest mark is exact. Most text between tags ends there.
//
// Longer text (a message body) goes in windows of textWindow bytes:
// bytes.IndexByte, which uses vector instructions, finds the first '<',
// '&' and ']' in the window, and only the bytes before them are tested
// eight at a time for the two ranges. On a 180-byte body that took 34 ns
// against 47 (BenchmarkSkipText). The window bounds the work per call, so
// text full of references costs no more than before: each call looks at
// most textWindow bytes past where it stops.
func skipText(b []byte, p int) int {
	for i := 0; i < 4 && p+8 <= len(b); i, p = i+1, p+8 {
		x := load64(b, p)
		t := x - lo8*0x20 | x
		y := x ^ lo8*'<'
		t |= (y - lo8) &^ y
		y = x ^ lo8*'&'
		t |= (y - lo8) &^ y
		y = x ^ lo8*']'
		t |= (y - lo8) &^ y
		if t &= hi8; t != 0 {
			return p + bits.TrailingZeros64(t)>>3
		}
	}
	for p+8 <= len(b) {
		w := b[p:min(len(b), p+textWindow)]
		n := len(w)
		if i := bytes.IndexByte(w, '<'); i >= 0 {
			w = w[:i]
		}
		if i := bytes.IndexByte(w, '&'); i >= 0 {
			w = w[:i]
		}
		if i := bytes.IndexByte(w, ']'); i >= 0 {
			w = w[:i]
		}
		q := 0
		for ; q+8 <= len(w); q += 8 {
			x := load64(w, q)
			if t := (x - lo8*0x20 | x) & hi8; t != 0 {
				return p + q + bits.TrailingZeros64(t)>>3
			}
		}
		for ; q < len(w); q++ {
			if c := w[q]; c < 0x20 || c >= 0x80 {
				return p + q
			}
		}
		if len(w) < n {
			return p + len(w) // at '<', '&' or ']'
		}
		p += n
	}
	for p < len(b) && class[b[p]]&cText != 0 {
		p++
	}
	return p
}

// textWindow is how far skipText looks ahead at once in long text.
const textWindow = 256

// skipAttr is skipText for attribute values. It stops at every byte
// below 0x2D, which takes in control characters (tab, LF, CR included),
// both quotes and '&' with one test, at '<' and at bytes from 0x80; the
// caller steps over the few printable ones that are not special (space,
// '!', '#', '$', '%', '(', ')', '*', '+', ',' and the other quote).
func skipAttr(b []byte, p int) int {
	for ; p+8 <= len(b); p += 8 {
		x := load64(b, p)
		y := x ^ lo8*'<'
		if t := (x - lo8*0x2D | x | (y-lo8)&^y) & hi8; t != 0 {
			return p + bits.TrailingZeros64(t)>>3
		}
	}
	for p < len(b) && class[b[p]]&cAttr != 0 {
		p++
	}
	return p
}

// scan advances the state machine over the buffered input, at most up to
// the current size limit past base. It returns resMore when it needs more
// input, with its position and state saved in r.
//
// The states are labels: the switch below only resumes a scan, and from
// there each step jumps straight to the next. All locals are declared first
// so that the jumps are legal.
func (r *Reader) scan() (int, error) {
	var (
		lim        = r.limit()
		n          = min(r.end-r.base, lim)
		b          = r.buf[r.base : r.base+n]
		p          = r.off
		c          byte
		e, colon   int
		res        int
		err        error
		dec        bool
		q          byte
		sig        uint32
		known      uint8
		name, want []byte
	)

	switch r.state {
	case stTop:
		goto top
	case stLT:
		goto lt
	case stStartName:
		goto startName
	case stInTag:
		goto inTag
	case stAttrName:
		goto attrName
	case stAttrEq:
		goto attrEq
	case stAttrQuote:
		goto attrQuote
	case stAttrVal:
		q, dec = r.quote, r.valDec
		goto attrVal
	case stContent:
		goto content
	case stEndName:
		goto endName
	case stEndSpace:
		goto endSpace
	case stCDATA:
		goto cdata
	case stDocStart:
		goto docStart
	case stDocDecl:
		goto docDecl
	case stXMLDecl:
		goto xmlDecl
	case stProlog:
		goto prolog
	}
	panic("wire: scanner in impossible state")

top: // between top-level elements
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p > 0 {
		if r.space {
			r.setSpace(p)
			return resSpace, nil
		}
		r.consume(p)
		n = min(r.end-r.base, lim)
		b, p = r.buf[r.base:r.base+n], 0
		goto top
	}
	if len(b) == 0 {
		r.state, r.off = stTop, 0
		return resMore, nil
	}
	if b[0] != '<' {
		return 0, r.fail(condInvalidXML, 0, "character data at stream level")
	}
	r.beginElement()

lt: // at '<'
	if p+1 >= len(b) {
		r.state, r.off = stLT, p
		return resMore, nil
	}
	switch b[p+1] {
	case '/':
		if r.phase == phaseHeader {
			return 0, r.fail(condNotWellFormed, p, "end tag before the stream header")
		}
		p += 2
		goto endName
	case '?':
		return 0, r.fail(condRestrictedXML, p, "processing instruction")
	case '!':
		e = min(len(b)-p, len(cdataOpen))
		if !bytes.Equal(b[p:p+e], cdataOpen[:e]) {
			what := "markup declaration"
			switch {
			case bytes.HasPrefix(b[p:], []byte("<!-")):
				what = "comment"
			case bytes.HasPrefix(b[p:], []byte("<!D")):
				what = "document type declaration"
			}
			return 0, r.fail(condRestrictedXML, p, "%s", what)
		}
		if e < len(cdataOpen) {
			r.state, r.off = stLT, p
			return resMore, nil
		}
		if r.depth == 0 {
			if r.phase == phaseHeader {
				return 0, r.fail(condNotWellFormed, p, "CDATA section before the stream header")
			}
			return 0, r.fail(condInvalidXML, p, "character data at stream level")
		}
		p += len(cdataOpen)
		goto cdata
	}
	p++

startName:
	// message, presence, iq and body are recognised with one load. (The
	// fast paths are written out in the scanner: a call would cost it its
	// registers.)
	e = 0
	if p+9 <= len(b) && r.lim.MaxName >= 8 {
		x := load64(b, p)
		switch {
		case x&mask7 == wordMessage:
			e = p + 7
		case x == wordPresence:
			e = p + 8
		case x&mask2 == wordIQ:
			e = p + 2
		case x&mask4 == wordBody:
			e = p + 4
		}
		// The name must end there.
		if e > 0 {
			if c = b[e]; class[c]&cName != 0 || c == ':' || c >= utf8.RuneSelf {
				e = 0
			}
		}
	}
	if e > 0 {
		colon, res = -1, lexOK
	} else if e, colon = asciiName(b, p), -1; !plainName(b, p, e, r.lim.MaxName) {
		e, colon, res = lexQName(b, p, r.lim.MaxName)
	} else {
		res = lexOK
	}
	if res != lexOK {
		if res == lexMore {
			r.state, r.off = stStartName, p
			return resMore, nil
		}
		return 0, r.lexFail(res, e, "element name")
	}
	r.tagName, r.tagColon = span{int32(p), int32(e)}, int32(colon)
	r.nattr = 0
	r.sawSpace = false
	p = e

inTag: // inside a start tag, after its name or an attribute
	for p < len(b) && isSpace(b[p]) {
		p++
		r.sawSpace = true
	}
	if p == len(b) {
		r.state, r.off = stInTag, p
		return resMore, nil
	}
	switch b[p] {
	case '>':
		p++
		if r.nattr == 0 && r.tagColon < 0 && r.depth > 0 && r.depth < r.lim.MaxDepth && r.plainDefault {
			// <name> inside an element, in a default namespace that needs
			// nothing recorded: endStartTag would only push it.
			r.stack = append(r.stack, open{name: r.tagName, nsLen: int32(len(r.ns))})
			r.depth++
			goto content
		}
		res, err = r.endStartTag(p, false)
	case '/':
		if p+1 == len(b) {
			r.state, r.off = stInTag, p
			return resMore, nil
		}
		if b[p+1] != '>' {
			return 0, r.fail(condNotWellFormed, p, "'/' in start tag")
		}
		p += 2
		res, err = r.endStartTag(p, true)
	default:
		if !r.sawSpace {
			return 0, r.fail(condNotWellFormed, p, "attribute not preceded by whitespace")
		}
		goto attrName
	}
	if err != nil || res != resMore {
		return res, err
	}
	goto content

attrName:
	if r.nattr >= r.lim.MaxAttrs && (r.phase != phaseHeader || r.nattr >= len(r.attrs)) {
		return 0, r.fail(condPolicyViolation, p, "more than %d attributes", r.nattr)
	}
	// to=, from=, type=, id=, xmlns= and xml:lang= are recognised with
	// one load, and lead straight on to the quote.
	if p+9 <= len(b) && r.lim.MaxName >= 8 {
		x := load64(b, p)
		e, colon, known = 0, -1, 0
		switch byte(x) {
		case 't':
			if x&mask3 == wordTo {
				e, sig, known = p+2, sigTo, knownTo
			} else if x&mask5 == wordType {
				e, sig, known = p+4, sigType, knownType
			}
		case 'i':
			if x&mask3 == wordID {
				e, sig, known = p+2, sigID, knownID
			}
		case 'f':
			if x&mask5 == wordFrom {
				e, sig, known = p+4, sigFrom, knownFrom
			}
		case 'x':
			if x&mask6 == wordXmlns {
				e, sig, known = p+5, xmlnsSig, knownXmlns
			} else if x == wordXMLLang && b[p+8] == '=' {
				e, colon, sig, known = p+8, p+3, sigLang, knownLang
			}
		}
		if e > 0 {
			a := &r.attrs[r.nattr]
			a.sig, a.name, a.colon, a.known = sig, span{int32(p), int32(e)}, int32(colon), known
			r.nattr++
			p = e + 1
			if p < len(b) && (b[p] == '\'' || b[p] == '"') {
				q = b[p] // the usual name='…', without spaces
				p++
				r.valStart, dec = int32(p), false
				goto attrVal
			}
			goto attrQuote
		}
	}
	if e, colon = asciiName(b, p), -1; !plainName(b, p, e, r.lim.MaxName) {
		e, colon, res = lexQName(b, p, r.lim.MaxName)
	} else {
		res = lexOK
	}
	if res != lexOK {
		if res == lexMore {
			r.state, r.off = stAttrName, p
			return resMore, nil
		}
		return 0, r.lexFail(res, e, "attribute name")
	}
	{
		a := &r.attrs[r.nattr]
		a.sig, a.name, a.colon, a.known = attrSig(b[p:e]), span{int32(p), int32(e)}, int32(colon), 0
	}
	r.nattr++
	p = e

attrEq:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state, r.off = stAttrEq, p
		return resMore, nil
	}
	if b[p] != '=' {
		return 0, r.fail(condNotWellFormed, p, "attribute without '='")
	}
	p++

attrQuote:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state, r.off = stAttrQuote, p
		return resMore, nil
	}
	q = b[p]
	if q != '\'' && q != '"' {
		return 0, r.fail(condNotWellFormed, p, "unquoted attribute value")
	}
	p++
	r.valStart, dec = int32(p), false

attrVal:
	for {
		if p = skipAttr(b, p); p == len(b) {
			r.state, r.off, r.quote, r.valDec = stAttrVal, p, q, dec
			return resMore, nil
		}
		switch c = b[p]; {
		case c == q:
			a := &r.attrs[r.nattr-1]
			a.val, a.dec = span{r.valStart, int32(p)}, dec
			p++
			// Usually one space and the next attribute's name.
			if p+1 < len(b) && b[p] == ' ' && class[b[p+1]]&cNameStart != 0 {
				p++
				r.sawSpace = true
				goto attrName
			}
			r.sawSpace = false
			goto inTag
		case c == '<':
			return 0, r.fail(condNotWellFormed, p, "'<' in attribute value")
		case c == '&':
			e, _, res = lexRef(b, p, r.lim.MaxName)
			if res != lexOK {
				if res == lexMore {
					r.state, r.off, r.quote, r.valDec = stAttrVal, p, q, dec
					return resMore, nil
				}
				return 0, r.lexFail(res, p, "reference")
			}
			p, dec = e, true
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state, r.off, r.quote, r.valDec = stAttrVal, p, q, dec
					return resMore, nil
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		case c == '\t' || c == '\n' || c == '\r':
			p, dec = p+1, true
		case c >= 0x20:
			p++ // a printable byte that skipAttr stops at for speed
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

content: // character data inside an element
	for {
		if p < len(b) && b[p] == '<' {
			goto lt // no text between two tags: the usual case
		}
		if p = skipText(b, p); p == len(b) {
			r.state, r.off = stContent, p
			return resMore, nil
		}
		switch c = b[p]; {
		case c == '<':
			goto lt
		case c == '\t' || c == '\n' || c == '\r':
			p++
		case c == '&':
			e, _, res = lexRef(b, p, r.lim.MaxName)
			if res != lexOK {
				if res == lexMore {
					r.state, r.off = stContent, p
					return resMore, nil
				}
				return 0, r.lexFail(res, p, "reference")
			}
			p = e
		case c == ']':
			if p+2 >= len(b) {
				r.state, r.off = stContent, p
				return resMore, nil
			}
			if b[p+1] == ']' && b[p+2] == '>' {
				return 0, r.fail(condNotWellFormed, p, "']]>' in character data")
			}
			p++
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state, r.off = stContent, p
					return resMore, nil
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

cdata: // inside <![CDATA[ … ]]>
	for {
		for p < len(b) && class[b[p]]&cCDATA != 0 {
			p++
		}
		if p == len(b) {
			r.state, r.off = stCDATA, p
			return resMore, nil
		}
		c = b[p]
		switch {
		case c == ']':
			if p+2 >= len(b) {
				r.state, r.off = stCDATA, p
				return resMore, nil
			}
			if b[p+1] == ']' && b[p+2] == '>' {
				p += 3
				goto content
			}
			p++
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state, r.off = stCDATA, p
					return resMore, nil
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

endName: // after "</"
	// The common case: the name of the open element, then '>' or space.
	if r.depth > 0 {
		want = r.bytesAt(r.stack[len(r.stack)-1].name)
	} else {
		want = r.hdrQName
	}
	if e = p + len(want); e < len(b) && bytes.Equal(b[p:e], want) && (b[e] == '>' || isSpace(b[e])) {
		p = e
		goto endSpace
	}
	e, _, res = lexQName(b, p, r.lim.MaxName)
	if res != lexOK {
		if res == lexMore {
			r.state, r.off = stEndName, p
			return resMore, nil
		}
		return 0, r.lexFail(res, e, "element name")
	}
	name = b[p:e]
	if r.depth == 0 {
		if !bytes.Equal(name, r.hdrQName) {
			return 0, r.fail(condNotWellFormed, p, "end tag </%s> without start tag", name)
		}
	} else if want = r.bytesAt(r.stack[len(r.stack)-1].name); !bytes.Equal(name, want) {
		return 0, r.fail(condNotWellFormed, p, "end tag </%s> does not match <%s>", name, want)
	}
	p = e

endSpace:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state, r.off = stEndSpace, p
		return resMore, nil
	}
	if b[p] != '>' {
		return 0, r.fail(condNotWellFormed, p, "malformed end tag")
	}
	p++
	if r.depth == 0 {
		r.consume(p)
		r.phase, r.state = phaseClosed, stClosed
		return resEnd, nil
	}
	r.depth--
	r.ns = r.ns[:r.stack[len(r.stack)-1].nsLen]
	r.stack = r.stack[:len(r.stack)-1]
	if r.depth == 0 {
		r.setElement(p)
		return resElement, nil
	}
	goto content

docStart: // header phase: an optional byte order mark
	if len(b) < len(bom) && bytes.HasPrefix(bom, b) {
		r.state, r.off = stDocStart, 0
		return resMore, nil
	}
	if bytes.HasPrefix(b, bom) {
		p = len(bom)
	}

docDecl: // whitespace, then maybe the XML declaration
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if rest := b[p:]; len(rest) <= len(xmlDeclOpen) && bytes.HasPrefix(xmlDeclOpen, rest) {
		r.state, r.off = stDocDecl, p
		return resMore, nil
	}
	if !bytes.HasPrefix(b[p:], xmlDeclOpen) || !isSpace(b[p+len(xmlDeclOpen)]) {
		goto prolog
	}
	p += len(xmlDeclOpen)
	r.declFrom, r.declScan = int32(p), int32(p)

xmlDecl: // inside <?xml … ?>: find its end first, then check it whole
	e = bytes.Index(b[r.declScan:], []byte("?>"))
	if e < 0 {
		r.declScan = int32(max(int(r.declScan), len(b)-1))
		r.state, r.off = stXMLDecl, p
		return resMore, nil
	}
	e += int(r.declScan)
	if res, what := checkXMLDecl(b[r.declFrom:e]); res != lexOK {
		if res == lexBadUTF8 {
			return 0, r.fail(condUnsupportedEncoding, int(r.declFrom), "%s", what)
		}
		return 0, r.fail(condNotWellFormed, int(r.declFrom), "%s", what)
	}
	p = e + 2

prolog: // before the stream header's start tag
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state, r.off = stProlog, p
		return resMore, nil
	}
	if b[p] != '<' {
		return 0, r.fail(condNotWellFormed, p, "character data before the stream header")
	}
	goto lt
}

// Names the framer meets all the time, as little-endian words, so that one
// load and compare recognises them.
const (
	wordTo       = uint64('t') | uint64('o')<<8 | uint64('=')<<16
	wordID       = uint64('i') | uint64('d')<<8 | uint64('=')<<16
	wordFrom     = uint64('f') | uint64('r')<<8 | uint64('o')<<16 | uint64('m')<<24 | uint64('=')<<32
	wordType     = uint64('t') | uint64('y')<<8 | uint64('p')<<16 | uint64('e')<<24 | uint64('=')<<32
	wordXmlns    = uint64('x') | uint64('m')<<8 | uint64('l')<<16 | uint64('n')<<24 | uint64('s')<<32 | uint64('=')<<40
	wordXMLLang  = uint64('x') | uint64('m')<<8 | uint64('l')<<16 | uint64(':')<<24 | uint64('l')<<32 | uint64('a')<<40 | uint64('n')<<48 | uint64('g')<<56
	wordMessage  = uint64('m') | uint64('e')<<8 | uint64('s')<<16 | uint64('s')<<24 | uint64('a')<<32 | uint64('g')<<40 | uint64('e')<<48
	wordPresence = uint64('p') | uint64('r')<<8 | uint64('e')<<16 | uint64('s')<<24 | uint64('e')<<32 | uint64('n')<<40 | uint64('c')<<48 | uint64('e')<<56
	wordIQ       = uint64('i') | uint64('q')<<8
	wordBody     = uint64('b') | uint64('o')<<8 | uint64('d')<<16 | uint64('y')<<24

	mask2 = 1<<16 - 1
	mask3 = 1<<24 - 1
	mask4 = 1<<32 - 1
	mask5 = 1<<40 - 1
	mask6 = 1<<48 - 1
	mask7 = 1<<56 - 1
)

var (
	bom         = []byte{0xEF, 0xBB, 0xBF}
	xmlDeclOpen = []byte("<?xml")
)

// skipScan is scan for the rest of a stanza being skipped (see startSkip):
// it finds where the stanza ends and checks on the way everything scan does
// that needs no bytes kept, and it drops the bytes it has passed, so that
// the buffer holds at most the token it stopped in (a name, a reference, a
// UTF-8 sequence, a few bytes of look-ahead). Its states are scan's, and
// mean the same; nothing refers back into the buffer but skNames, which
// holds copies.
//
// It stops with a policy-violation when the stanza has not ended within
// MaxSkip bytes, as scan does at MaxStanza.
func (r *Reader) skipScan() (int, error) {
	var (
		room = r.lim.MaxSkip - r.skipped // what is left of MaxSkip from base
		n    = min(r.end-r.base, room)
		b    = r.buf[r.base : r.base+n]
		p    = r.off
		c    byte
		e    int
		res  int
		q    byte
		top  []byte
	)

	switch r.state {
	case stLT:
		goto lt
	case stStartName:
		goto startName
	case stInTag:
		goto inTag
	case stAttrName:
		goto attrName
	case stAttrEq:
		goto attrEq
	case stAttrQuote:
		goto attrQuote
	case stAttrVal:
		q = r.quote
		goto attrVal
	case stContent:
		goto content
	case stCDATA:
		goto cdata
	case stEndName:
		goto endName
	case stEndSpace:
		goto endSpace
	}
	panic("wire: skip scanner in impossible state")

content: // character data
	for {
		if p = skipText(b, p); p == len(b) {
			r.state = stContent
			goto more
		}
		switch c = b[p]; {
		case c == '<':
			goto lt
		case c == '\t' || c == '\n' || c == '\r':
			p++
		case c == '&':
			e, _, res = lexRef(b, p, r.lim.MaxName)
			if res != lexOK {
				if res == lexMore {
					r.state = stContent
					goto more
				}
				return 0, r.lexFail(res, p, "reference")
			}
			p = e
		case c == ']':
			if p+2 >= len(b) {
				r.state = stContent
				goto more
			}
			if b[p+1] == ']' && b[p+2] == '>' {
				return 0, r.fail(condNotWellFormed, p, "']]>' in character data")
			}
			p++
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state = stContent
					goto more
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

lt: // at '<', inside the stanza
	if p+1 >= len(b) {
		r.state = stLT
		goto more
	}
	switch b[p+1] {
	case '/':
		p += 2
		goto endName
	case '?':
		return 0, r.fail(condRestrictedXML, p, "processing instruction")
	case '!':
		e = min(len(b)-p, len(cdataOpen))
		if !bytes.Equal(b[p:p+e], cdataOpen[:e]) {
			what := "markup declaration"
			switch {
			case bytes.HasPrefix(b[p:], []byte("<!-")):
				what = "comment"
			case bytes.HasPrefix(b[p:], []byte("<!D")):
				what = "document type declaration"
			}
			return 0, r.fail(condRestrictedXML, p, "%s", what)
		}
		if e < len(cdataOpen) {
			r.state = stLT
			goto more
		}
		p += len(cdataOpen)
		goto cdata
	}
	p++

startName:
	e, _, res = lexQName(b, p, r.lim.MaxName)
	if res != lexOK {
		if res == lexMore {
			r.state = stStartName
			goto more
		}
		return 0, r.lexFail(res, e, "element name")
	}
	r.pushName(b[p:e])
	r.nattr, r.sawSpace = 0, false
	p = e

inTag: // inside a start tag, after its name or an attribute
	for p < len(b) && isSpace(b[p]) {
		p++
		r.sawSpace = true
	}
	if p == len(b) {
		r.state = stInTag
		goto more
	}
	switch b[p] {
	case '>':
		if r.depth+1 > r.lim.MaxDepth {
			return 0, r.fail(condPolicyViolation, p, "elements nested deeper than %d", r.lim.MaxDepth)
		}
		r.depth++
		p++
		goto content
	case '/':
		if p+1 == len(b) {
			r.state = stInTag
			goto more
		}
		if b[p+1] != '>' {
			return 0, r.fail(condNotWellFormed, p, "'/' in start tag")
		}
		if r.depth+1 > r.lim.MaxDepth {
			return 0, r.fail(condPolicyViolation, p, "elements nested deeper than %d", r.lim.MaxDepth)
		}
		r.popName()
		p += 2
		goto content
	}
	if !r.sawSpace {
		return 0, r.fail(condNotWellFormed, p, "attribute not preceded by whitespace")
	}

attrName:
	if r.nattr >= r.lim.MaxAttrs {
		return 0, r.fail(condPolicyViolation, p, "more than %d attributes", r.nattr)
	}
	e, _, res = lexQName(b, p, r.lim.MaxName)
	if res != lexOK {
		if res == lexMore {
			r.state = stAttrName
			goto more
		}
		return 0, r.lexFail(res, e, "attribute name")
	}
	r.nattr++
	p = e

attrEq:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state = stAttrEq
		goto more
	}
	if b[p] != '=' {
		return 0, r.fail(condNotWellFormed, p, "attribute without '='")
	}
	p++

attrQuote:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state = stAttrQuote
		goto more
	}
	q = b[p]
	if q != '\'' && q != '"' {
		return 0, r.fail(condNotWellFormed, p, "unquoted attribute value")
	}
	p++

attrVal: // the quote is q
	for {
		if p = skipAttr(b, p); p == len(b) {
			r.state, r.quote = stAttrVal, q
			goto more
		}
		switch c = b[p]; {
		case c == q:
			p++
			r.sawSpace = false
			goto inTag
		case c == '<':
			return 0, r.fail(condNotWellFormed, p, "'<' in attribute value")
		case c == '&':
			e, _, res = lexRef(b, p, r.lim.MaxName)
			if res != lexOK {
				if res == lexMore {
					r.state, r.quote = stAttrVal, q
					goto more
				}
				return 0, r.lexFail(res, p, "reference")
			}
			p = e
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state, r.quote = stAttrVal, q
					goto more
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		case c >= 0x20 || c == '\t' || c == '\n' || c == '\r':
			p++ // the other quote, or a byte skipAttr stops at for speed
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

cdata: // inside <![CDATA[ … ]]>
	for {
		for p < len(b) && class[b[p]]&cCDATA != 0 {
			p++
		}
		if p == len(b) {
			r.state = stCDATA
			goto more
		}
		switch c = b[p]; {
		case c == ']':
			if p+2 >= len(b) {
				r.state = stCDATA
				goto more
			}
			if b[p+1] == ']' && b[p+2] == '>' {
				p += 3
				goto content
			}
			p++
		case c >= 0x80:
			e, res = lexRune(b, p)
			if res != lexOK {
				if res == lexMore {
					r.state = stCDATA
					goto more
				}
				return 0, r.lexFail(res, p, "")
			}
			p = e
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

endName: // after "</"
	e, _, res = lexQName(b, p, r.lim.MaxName)
	if res != lexOK {
		if res == lexMore {
			r.state = stEndName
			goto more
		}
		return 0, r.lexFail(res, e, "element name")
	}
	if top = r.skNames[r.skOpen[len(r.skOpen)-1]:]; !bytes.Equal(b[p:e], top) {
		return 0, r.fail(condNotWellFormed, p, "end tag </%s> does not match <%s>", b[p:e], top)
	}
	p = e

endSpace:
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if p == len(b) {
		r.state = stEndSpace
		goto more
	}
	if b[p] != '>' {
		return 0, r.fail(condNotWellFormed, p, "malformed end tag")
	}
	p++
	r.popName()
	if r.depth--; r.depth == 0 {
		r.endSkip(p)
		return resElement, nil
	}
	goto content

more: // the scan stopped in a token that starts at p (r.state is set)
	if n == room {
		return 0, r.fail(condPolicyViolation, -r.skipped, "element larger than %d bytes", r.lim.MaxSkip) // at its start
	}
	// Drop what is behind: InputOffset and error offsets stay right, as
	// skipped counts it.
	r.skipped += p
	r.base += p
	r.off = 0
	return resMore, nil
}

// popName forgets the innermost name in skNames.
func (r *Reader) popName() {
	last := len(r.skOpen) - 1
	r.skNames, r.skOpen = r.skNames[:r.skOpen[last]], r.skOpen[:last]
}
