package wire

import "unicode/utf8"

// Byte classes for the scanner's inner loops. Only ASCII bytes carry classes;
// bytes from 0x80 up always take the slow path through the UTF-8 decoder.
const (
	cNameStart = 1 << iota // ASCII NameStartChar other than ':'
	cName                  // ASCII NameChar other than ':'
	cSpace                 // XML whitespace (the S production)
	cText                  // needs no attention in character data
	cAttr                  // needs no attention in an attribute value
	cCDATA                 // needs no attention inside a CDATA section
)

var class = func() (t [256]uint8) {
	for c := 0; c < utf8.RuneSelf; c++ {
		b := byte(c)
		var k uint8
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', b == '_':
			k |= cNameStart | cName
		case '0' <= b && b <= '9', b == '-', b == '.':
			k |= cName
		}
		if b == ' ' || b == '\t' || b == '\n' || b == '\r' {
			k |= cSpace
		}
		printable := b >= 0x20 // 0x7f is a legal XML character
		if (printable || b == '\t' || b == '\n' || b == '\r') && b != '<' && b != '&' && b != ']' {
			k |= cText
		}
		// Literal tab, LF and CR in attribute values are normalised to spaces
		// when decoded, so they leave the fast path too.
		if printable && b != '<' && b != '&' && b != '\'' && b != '"' {
			k |= cAttr
		}
		if (printable || b == '\t' || b == '\n' || b == '\r') && b != ']' {
			k |= cCDATA
		}
		t[c] = k
	}
	return t
}()

func isSpace(c byte) bool { return class[c]&cSpace != 0 }

// isChar reports whether r is allowed in an XML 1.0 document (the Char
// production). The decoder never yields surrogates, so they need no test.
func isChar(r rune) bool {
	switch {
	case r < 0x20:
		return r == '\t' || r == '\n' || r == '\r'
	case r <= 0xD7FF:
		return true
	case r < 0xE000:
		return false
	case r <= 0xFFFD:
		return true
	}
	return r >= 0x10000 && r <= utf8.MaxRune
}

// isNameStartRune and isNameRune implement NameStartChar and NameChar of XML
// 1.0 (fifth edition) for characters outside ASCII.
func isNameStartRune(r rune) bool {
	switch {
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return false
}

func isNameRune(r rune) bool {
	return isNameStartRune(r) || r == 0xB7 || r >= 0x300 && r <= 0x36F || r >= 0x203F && r <= 0x2040
}

// Outcomes of the small, bounded lexing steps. A step that runs out of input
// reports more and leaves the scan position where the token began, so that
// it can be repeated once more bytes have arrived.
const (
	lexOK = iota
	lexMore
	lexBad     // not-well-formed
	lexLong    // a configured limit was exceeded: policy-violation
	lexEntity  // an entity other than the five predefined: restricted-xml
	lexBadUTF8 // invalid UTF-8 or a character outside XML's range
)

// asciiName returns the end of the run of ASCII name characters at p.
func asciiName(b []byte, p int) int {
	for p < len(b) && class[b[p]]&cName != 0 {
		p++
	}
	return p
}

// plainName reports whether b[p:e], as found by asciiName, is a complete
// unprefixed name: the common case, decided without calling lexQName.
func plainName(b []byte, p, e, maxLen int) bool {
	return e < len(b) && e > p && b[e] < utf8.RuneSelf && b[e] != ':' && class[b[p]]&cNameStart != 0 && e-p <= maxLen
}

// lexQName scans a qualified name (NCName or NCName:NCName) starting at p.
// It returns the index just past the name and the index of the colon, or -1.
func lexQName(b []byte, p, maxLen int) (end, colon, res int) {
	e := asciiName(b, p)
	if plainName(b, p, e, maxLen) {
		return e, -1, lexOK
	}
	// prefix:local in ASCII, such as xml:lang or db:result.
	if e < len(b) && b[e] == ':' && e > p && class[b[p]]&cNameStart != 0 && e+1 < len(b) && class[b[e+1]]&cNameStart != 0 {
		if end := asciiName(b, e+1); end < len(b) && b[end] < utf8.RuneSelf && b[end] != ':' && end-p <= maxLen {
			return end, e, lexOK
		}
	}
	return lexQNameSlow(b, p, maxLen)
}

func lexQNameSlow(b []byte, p, maxLen int) (end, colon, res int) {
	colon = -1
	i := p
	partStart := p // first byte of the current NCName
	for i < len(b) {
		if i-p > maxLen {
			return i, colon, lexLong
		}
		c := b[i]
		if c < utf8.RuneSelf {
			k := class[c]
			if k&cName == 0 {
				if c != ':' {
					break
				}
				if colon >= 0 || i == partStart {
					return i, colon, lexBad
				}
				colon = i
				i++
				partStart = i
				continue
			}
			if i == partStart && k&cNameStart == 0 {
				return i, colon, lexBad
			}
			i++
			continue
		}
		if !utf8.FullRune(b[i:]) {
			return p, -1, lexMore
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i, colon, lexBadUTF8
		}
		if i == partStart && !isNameStartRune(r) || !isNameRune(r) {
			return i, colon, lexBad
		}
		i += size
	}
	if i-p > maxLen {
		return i, colon, lexLong
	}
	if i == len(b) {
		return p, -1, lexMore
	}
	if i == partStart {
		return i, colon, lexBad // empty name or trailing colon
	}
	return i, colon, lexOK
}

// maxCharRef bounds the length of a character reference. XML allows any
// number of leading zeros; nobody sends more than a handful.
const maxCharRef = 32

// lexRef scans a reference starting at b[p] == '&' and returns the index past
// its ';' and the character it stands for.
func lexRef(b []byte, p, maxName int) (end int, r rune, res int) {
	i := p + 1
	if i == len(b) {
		return p, 0, lexMore
	}
	if b[i] != '#' {
		e, colon, res := lexQName(b, i, maxName)
		switch res {
		case lexOK:
		case lexMore:
			return p, 0, lexMore
		default:
			return e, 0, res
		}
		if b[e] != ';' {
			return e, 0, lexBad
		}
		if colon < 0 {
			switch string(b[i:e]) {
			case "lt":
				return e + 1, '<', lexOK
			case "gt":
				return e + 1, '>', lexOK
			case "amp":
				return e + 1, '&', lexOK
			case "apos":
				return e + 1, '\'', lexOK
			case "quot":
				return e + 1, '"', lexOK
			}
		}
		return e, 0, lexEntity
	}
	i++
	hex := false
	if i < len(b) && b[i] == 'x' {
		hex = true
		i++
	}
	digits := i
	var v rune
	for ; i < len(b); i++ {
		if i-p > maxCharRef {
			return i, 0, lexLong
		}
		c := b[i]
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case hex && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case hex && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		case c == ';':
			if i == digits || !isChar(v) {
				return i, 0, lexBad
			}
			return i + 1, v, lexOK
		default:
			return i, 0, lexBad
		}
		if hex {
			v = v*16 + d
		} else {
			v = v*10 + d
		}
		if v > utf8.MaxRune {
			v = utf8.MaxRune + 1 // stays invalid without overflowing
		}
	}
	return p, 0, lexMore
}

// lexRune checks the multi-byte UTF-8 sequence at b[p] and returns its end.
func lexRune(b []byte, p int) (end, res int) {
	if !utf8.FullRune(b[p:]) {
		return p, lexMore
	}
	r, size := utf8.DecodeRune(b[p:])
	if r == utf8.RuneError && size == 1 || !isChar(r) {
		return p, lexBadUTF8
	}
	return p + size, lexOK
}
