package s2s

import (
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Bounce is the relay's routing.Bouncer: the framer writes the error stanza
// from the start-tag facts the router kept of st.
func Bounce(dst []byte, st *routing.Stanza, e stanza.Error) ([]byte, bool) {
	el := wire.Element{Local: []byte(st.Kind.String()), NS: []byte(wire.NSServer),
		To: []byte(st.To), From: []byte(st.From)}
	switch st.Kind {
	case policy.Message:
		el.Kind = wire.Message
	case policy.Presence:
		el.Kind = wire.Presence
	case policy.IQ:
		el.Kind = wire.IQ
	default:
		return dst, false
	}
	if st.ID != "" {
		el.ID = []byte(st.ID)
	}
	if st.Type != "" {
		el.Type = []byte(st.Type)
	}
	return wire.AppendBounce(dst, &el, e)
}

// explain makes the stream error that refuses a peer. The organisation's
// own servers (the internal face) read the reason and the rule; the
// federation reads what policy.explain allows: nothing but the condition
// (none), the reason without the rule (brief), or both (full). The reason
// given must name nothing internal: addresses and routes go to the logs.
func (s *Server) explain(face policy.Face, cond stream.Error, rule, format string, args ...any) stream.Error {
	ex := s.Router.Policy().Explain()
	if face == policy.Internal {
		ex = policy.ExplainFull
	}
	switch {
	case ex == policy.ExplainNone:
		cond.Text = nil
		return cond
	case ex == policy.ExplainFull && rule != "":
		format += " (%s)"
		args = append(args, rule)
	}
	return withText(cond, format, args...)
}
