package wire

import (
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

var zeroJID jid.JID

// AppendBounce appends to dst the error stanza that answers e with se (RFC
// 6120 §8.3): the same kind of stanza with type='error', 'from' and 'to'
// swapped, the same 'id', and
//
//	<error type='…' [by='…']><COND xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>[<text …>…</text>]</error>
//
// An empty or unusable se.Condition becomes undefined-condition and an
// unknown se.Type becomes cancel. Every se.Text entry becomes a <text/>
// (sorted by language, xml:lang omitted for the "" key).
//
// It returns dst unchanged and false when no bounce may be sent: e is not a
// stanza, is itself an error, is an IQ result (§8.2.3: results and errors
// are never answered), or has no 'from' to return it to.
//
// The original payload is not echoed (§8.3.1 allows but does not require
// it): a bounce stays small whatever was bounced, and it needs none of the
// namespace fix-ups the payload might.
//
// It allocates nothing when dst has room, se.By is the zero JID and se.Text
// has at most eight entries.
func AppendBounce(dst []byte, e *Element, se stanza.Error) ([]byte, bool) {
	if !e.IsStanza() || len(e.From) == 0 {
		return dst, false
	}
	switch string(e.Type) {
	case "error":
		return dst, false
	case "result":
		if e.Kind == IQ {
			return dst, false
		}
	}
	dst = append(dst, '<')
	dst = append(dst, e.Local...)
	dst = appendAttr(dst, " from='", e.To)
	dst = appendAttr(dst, " to='", e.From)
	dst = append(dst, " type='error'"...)
	if e.ID != nil {
		dst = append(dst, " id='"...)
		dst = appendEscaped(dst, e.ID, true)
		dst = append(dst, '\'')
	}

	typ := se.Type
	switch typ {
	case stanza.Auth, stanza.Cancel, stanza.Continue, stanza.Modify, stanza.Wait:
	default:
		typ = stanza.Cancel
	}
	dst = append(dst, "><error type='"...)
	dst = append(dst, typ...)
	dst = append(dst, '\'')
	if !se.By.Equal(zeroJID) {
		dst = appendAttr(dst, " by='", se.By.String())
	}
	cond := string(se.Condition)
	if !isCondition(cond) {
		cond = string(stanza.UndefinedCondition)
	}
	dst = append(dst, "><"...)
	dst = append(dst, cond...)
	dst = append(dst, " xmlns='"+NSStanzaError+"'/>"...)

	if len(se.Text) > 0 {
		var small [8]string
		langs := small[:0]
		if len(se.Text) > len(small) {
			langs = make([]string, 0, len(se.Text))
		}
		for lang := range se.Text {
			langs = append(langs, lang)
		}
		// Insertion sort: a handful of entries, and no allocation.
		for i := 1; i < len(langs); i++ {
			for j := i; j > 0 && langs[j] < langs[j-1]; j-- {
				langs[j], langs[j-1] = langs[j-1], langs[j]
			}
		}
		for _, lang := range langs {
			dst = append(dst, "<text xmlns='"+NSStanzaError+"'"...)
			dst = appendAttr(dst, " xml:lang='", lang)
			dst = append(dst, '>')
			dst = appendEscaped(dst, se.Text[lang], false)
			dst = append(dst, "</text>"...)
		}
	}
	dst = append(dst, "</error></"...)
	dst = append(dst, e.Local...)
	return append(dst, '>'), true
}
