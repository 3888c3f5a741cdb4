package s2s

import (
	"mellium.im/xmpp/stanza"

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

// ruleText is how a stream error names the policy rule that refused a
// peer: " (rule)" for the organisation's own servers, nothing for the
// federation, which learns that it is refused but not how the policy is
// written (the rule goes to the audit trail).
func ruleText(face policy.Face, rule string) string {
	if face != policy.Internal || rule == "" {
		return ""
	}
	return " (" + rule + ")"
}
