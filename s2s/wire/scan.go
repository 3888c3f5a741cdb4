package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"

	"mellium.im/xmpp/stream"
)

// Word-at-a-time tests, eight input bytes per step. Each is exact about
// whether some byte qualifies (borrows can only mark bytes above one that
// does), which is all the loops need: a hit sends them to the byte loop.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// hasByte marks the bytes of x equal to c.
func hasByte(x, c uint64) uint64 {
	y := x ^ (lo8 * c)
	return (y - lo8) &^ y
}

// textStops marks, in the high bit of each byte, the bytes of x that need
// attention in character data: below 0x20 (tab, LF and CR included; the
// caller lets them through), from 0x80 up, '<', '&' and ']'. The lowest
// marked byte is always a true one; marks above it may be spurious.
func textStops(x uint64) uint64 {
	return ((x - lo8*0x20) | x | hasByte(x, '<') | hasByte(x, '&') | hasByte(x, ']')) & hi8
}

// attrStops is textStops for an attribute value quoted with q.
func attrStops(x, q uint64) uint64 {
	return ((x - lo8*0x20) | x | hasByte(x, '<') | hasByte(x, '&') | hasByte(x, q)) & hi8
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
		return 0, r.fail(stream.InvalidXML, 0, "character data at stream level")
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
			return 0, r.fail(stream.NotWellFormed, p, "end tag before the stream header")
		}
		p += 2
		goto endName
	case '?':
		return 0, r.fail(stream.RestrictedXML, p, "processing instruction")
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
			return 0, r.fail(stream.RestrictedXML, p, what)
		}
		if e < len(cdataOpen) {
			r.state, r.off = stLT, p
			return resMore, nil
		}
		if r.depth == 0 {
			if r.phase == phaseHeader {
				return 0, r.fail(stream.NotWellFormed, p, "CDATA section before the stream header")
			}
			return 0, r.fail(stream.InvalidXML, p, "character data at stream level")
		}
		p += len(cdataOpen)
		goto cdata
	}
	p++

startName:
	if e, colon = asciiName(b, p), -1; !plainName(b, p, e, r.lim.MaxName) {
		e, colon, res = lexQNameSlow(b, p, r.lim.MaxName)
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
		res, err = r.endStartTag(p, false)
	case '/':
		if p+1 == len(b) {
			r.state, r.off = stInTag, p
			return resMore, nil
		}
		if b[p+1] != '>' {
			return 0, r.fail(stream.NotWellFormed, p, "'/' in start tag")
		}
		p += 2
		res, err = r.endStartTag(p, true)
	default:
		if !r.sawSpace {
			return 0, r.fail(stream.NotWellFormed, p, "attribute not preceded by whitespace")
		}
		if r.nattr >= r.lim.MaxAttrs && (r.phase != phaseHeader || r.nattr >= len(r.attrs)) {
			return 0, r.fail(stream.PolicyViolation, p, fmt.Sprintf("more than %d attributes", r.nattr))
		}
		goto attrName
	}
	if err != nil || res != resMore {
		return res, err
	}
	goto content

attrName:
	if e, colon = asciiName(b, p), -1; !plainName(b, p, e, r.lim.MaxName) {
		e, colon, res = lexQNameSlow(b, p, r.lim.MaxName)
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
	r.attrs[r.nattr] = attr{sig: attrSig(b[p:e]), name: span{int32(p), int32(e)}, colon: int32(colon)}
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
		return 0, r.fail(stream.NotWellFormed, p, "attribute without '='")
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
		return 0, r.fail(stream.NotWellFormed, p, "unquoted attribute value")
	}
	p++
	r.valStart, dec = int32(p), false

attrVal:
	for {
		if p+8 <= len(b) {
			t := attrStops(binary.LittleEndian.Uint64(b[p:]), uint64(q))
			if t == 0 {
				p += 8
				continue
			}
			p += bits.TrailingZeros64(t) >> 3
		} else {
			for p < len(b) && class[b[p]]&cAttr != 0 {
				p++
			}
			if p == len(b) {
				r.state, r.off, r.quote, r.valDec = stAttrVal, p, q, dec
				return resMore, nil
			}
		}
		switch c = b[p]; {
		case c == q:
			a := &r.attrs[r.nattr-1]
			a.val, a.dec = span{r.valStart, int32(p)}, dec
			p++
			r.sawSpace = false
			goto inTag
		case c == '\'' || c == '"':
			p++
		case c == '<':
			return 0, r.fail(stream.NotWellFormed, p, "'<' in attribute value")
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
		default:
			return 0, r.lexFail(lexBadUTF8, p, "")
		}
	}

content: // character data inside an element
	for {
		if p+8 <= len(b) {
			t := textStops(binary.LittleEndian.Uint64(b[p:]))
			if t == 0 {
				p += 8
				continue
			}
			p += bits.TrailingZeros64(t) >> 3
		} else {
			for p < len(b) && class[b[p]]&cText != 0 {
				p++
			}
			if p == len(b) {
				r.state, r.off = stContent, p
				return resMore, nil
			}
		}
		switch c = b[p]; {
		case c == '\t' || c == '\n' || c == '\r':
			p++
		case c == '<':
			goto lt
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
				return 0, r.fail(stream.NotWellFormed, p, "']]>' in character data")
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
			return 0, r.fail(stream.NotWellFormed, p, fmt.Sprintf("end tag </%s> without start tag", name))
		}
	} else if want = r.bytesAt(r.stack[len(r.stack)-1].name); !bytes.Equal(name, want) {
		return 0, r.fail(stream.NotWellFormed, p, fmt.Sprintf("end tag </%s> does not match <%s>", name, want))
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
		return 0, r.fail(stream.NotWellFormed, p, "malformed end tag")
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
			return 0, r.fail(stream.UnsupportedEncoding, int(r.declFrom), what)
		}
		return 0, r.fail(stream.NotWellFormed, int(r.declFrom), what)
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
		return 0, r.fail(stream.NotWellFormed, p, "character data before the stream header")
	}
	goto lt
}

var (
	bom         = []byte{0xEF, 0xBB, 0xBF}
	xmlDeclOpen = []byte("<?xml")
)
