package policy

import "mellium.im/xmpp/stanza"

// Stanza is what a stanza decision needs from one stanza: its start tag and
// its size. Nothing is retained after the call.
type Stanza struct {
	// Kind is the element: Message, Presence or IQ.
	Kind Kind
	// Type is the type attribute, "" when absent.
	Type string
	// From is the from attribute. Only its form matters (whether it has a
	// resourcepart); its domain is not compared with the remote domain,
	// which is the caller's authenticated pair.
	From string
	// Size is the stanza's length in bytes as it arrived.
	Size int
}

// RawStanza is Stanza with the attribute values as byte slices, as a framer
// holds them; deciding on it allocates nothing either. The slices are not
// retained.
type RawStanza struct {
	Kind Kind
	Type []byte
	From []byte
	Size int
}

// Decision is the verdict on one stanza.
//
// When Allowed is false the stanza is not forwarded. If Send is true the
// relay answers the sender with an error stanza of the same kind carrying
// Condition and ErrorType (see StanzaError); if Send is false the stanza is
// dropped silently, because RFC 6120 §8.3.1 and RFC 6121 forbid or advise
// against an answer (type='error' stanzas, IQ results, most presence).
// An allowed stanza is forwarded unchanged: policy never alters payloads.
//
// The condition follows from the Reason, so it is a method: that keeps a
// Decision small enough to be returned in registers on the hot path.
type Decision struct {
	// Allowed reports whether the stanza may cross.
	Allowed bool
	// Send reports whether an error stanza goes back to the sender. It is
	// always false when Allowed is true.
	Send bool
	// Reason is what decided; for an allowed stanza, ReasonAllowList or
	// ReasonDefault.
	Reason Reason
	// Rule names the configuration entry that decided, for logs and audit:
	// "deny[2] *.evil.example", "rules[0].kinds", "default deny",
	// "limits.max_stanza_bytes", or the RFC rule for protocol refusals.
	Rule string

	// rule is the remote domain's first matching rule, kept for the
	// limiter (its rate) whether or not it decided.
	rule *rule
	// send is Send as it would be if the stanza were refused.
	send bool
}

// StanzaError returns the error to put in the bounce, or a zero
// stanza.Error when the decision sends none.
func (d Decision) StanzaError() stanza.Error {
	if !d.Send {
		return stanza.Error{}
	}
	return stanza.Error{Type: d.ErrorType(), Condition: d.Condition()}
}

// Condition returns the stanza error condition of a refusal, "" when
// allowed: not-allowed for the domain lists, kinds and subscriptions;
// bad-request for an invalid type or a full-JID subscription;
// policy-violation for size; resource-constraint for rate.
func (d Decision) Condition() stanza.Condition {
	c, _ := d.stanzaError()
	return c
}

// ErrorType returns the stanza error type of a refusal, "" when allowed:
// cancel, modify (bad-request, size) or wait (rate).
func (d Decision) ErrorType() stanza.ErrorType {
	_, t := d.stanzaError()
	return t
}

func (d Decision) stanzaError() (stanza.Condition, stanza.ErrorType) {
	if d.Allowed {
		return "", ""
	}
	switch d.Reason {
	case ReasonType, ReasonFullJID:
		return stanza.BadRequest, stanza.Modify
	case ReasonSize:
		return stanza.PolicyViolation, stanza.Modify
	case ReasonRate:
		return stanza.ResourceConstraint, stanza.Wait
	}
	// Deny list, default deny, unusable domain, kinds, subscriptions.
	return stanza.NotAllowed, stanza.Cancel
}

// Rate returns the token bucket that applies to the remote domain (stanzas
// per second and burst), or zeros when it is unlimited. Limiter.Limit uses
// it.
func (d Decision) Rate() (perSecond float64, burst int) {
	if d.rule == nil {
		return 0, 0
	}
	return d.rule.rate, d.rule.burst
}

// Stanza decides whether a stanza between our domains and remote may cross
// in direction dir. remote is the remote domain of the stream's
// authenticated pair, in normalised form (see Domain). The checks, in
// order, and the error each sends:
//
//  1. remote domain (deny list, default deny): not-allowed, cancel;
//  2. kinds of the first matching rule: not-allowed, cancel;
//  3. type attribute valid for the kind (RFC 6120 §8.2.3 for IQ, RFC 6121
//     §4.7.1 for presence): bad-request, modify;
//  4. subscription stanzas (subscribe, subscribed, unsubscribe,
//     unsubscribed) from a bare JID (RFC 6121 §3): bad-request, modify;
//  5. subscriptions allowed in this direction by the rule: not-allowed,
//     cancel;
//  6. size against the rule's or the global limit: policy-violation,
//     modify.
//
// Rate limits are applied after, by Limiter.Limit, so that a refused stanza
// costs no token. Probes and directed presence pass like any presence.
func (p *Policy) Stanza(remote string, dir Direction, s Stanza) Decision {
	return decide(p, remote, dir, s.Kind, s.Type, s.From, s.Size)
}

// RawStanza is Stanza for a RawStanza.
func (p *Policy) RawStanza(remote string, dir Direction, s RawStanza) Decision {
	return decide(p, remote, dir, s.Kind, s.Type, s.From, s.Size)
}

// Remote is a remote domain as this policy decides it: its rule, found
// once. A stream that carries many stanzas of one pair keeps it (see
// Policy.Remote) and decides each stanza with StanzaFor, rather than
// matching the domain against the lists for every stanza. It is valid only
// with the Policy that made it.
type Remote struct {
	p *Policy
	r resolved
}

// Remote resolves a remote domain for StanzaFor.
func (p *Policy) Remote(remote string) Remote { return Remote{p, resolve(p, remote)} }

// Of reports whether rm was made by p.
func (rm *Remote) Of(p *Policy) bool { return rm.p == p && p != nil }

// StanzaFor is Stanza for a remote domain resolved by Remote: the same
// decision, without matching the domain again. rm must come from p.
func (p *Policy) StanzaFor(rm *Remote, dir Direction, s Stanza) Decision {
	return decideFor(p, rm.r, dir, s.Kind, s.Type, s.From, s.Size)
}

func decide[T text](p *Policy, remote string, dir Direction, kind Kind, typ, from T, size int) Decision {
	return decideFor(p, resolve(p, remote), dir, kind, typ, from, size)
}

func decideFor[T text](p *Policy, r resolved, dir Direction, kind Kind, typ, from T, size int) Decision {
	st := classify(kind, typ)
	d := Decision{Reason: r.reason, Rule: r.label, rule: r.rule, send: sendError(kind, st)}
	if !r.allowed {
		return d.refuse(r.reason, r.label)
	}
	ru := r.rule
	kinds := Message.bit() | Presence.bit() | IQ.bit()
	if ru != nil {
		kinds = ru.kinds
	}
	switch {
	case kind < Message || kind > IQ:
		return d.refuse(ReasonKind, labelKind)
	case kinds&kind.bit() == 0:
		return d.refuse(ReasonKind, ru.kindsLabel)
	case st == typeInvalid:
		label := labelIQType
		if kind == Presence {
			label = labelPresenceType
		}
		return d.refuse(ReasonType, label)
	}
	if st.subscription() {
		if hasResource(from) {
			return d.refuse(ReasonFullJID, labelBareJID)
		}
		if ru != nil {
			ok, label := ru.subsIn, ru.subsInLabel
			switch dir {
			case In:
			case Out:
				ok, label = ru.subsOut, ru.subsOutLabel
			default:
				// An unknown direction must satisfy both.
				if ok && !ru.subsOut {
					ok, label = false, ru.subsOutLabel
				}
			}
			if !ok {
				return d.refuse(ReasonSubscription, label)
			}
		}
	}
	limit, label := p.maxBytes, labelMaxBytes
	if ru != nil {
		limit, label = ru.maxBytes, ru.sizeLabel
	}
	if limit > 0 && size > limit {
		return d.refuse(ReasonSize, label)
	}
	d.Allowed = true
	return d
}

func (d Decision) refuse(why Reason, label string) Decision {
	d.Allowed = false
	d.Send = d.send
	d.Reason = why
	d.Rule = label
	return d
}

// stanzaType is a stanza's type attribute, classified per kind.
type stanzaType uint8

const (
	typeInvalid stanzaType = iota // not a valid type for the kind
	typeError                     // type='error', any kind

	typeNormal    // message: normal, chat, or absent/unknown (RFC 6121 §5.2.2)
	typeGroupchat // message
	typeHeadline  // message

	typeAvailable    // presence without type
	typeUnavailable  // presence
	typeProbe        // presence
	typeSubscribe    // presence
	typeSubscribed   // presence
	typeUnsubscribe  // presence
	typeUnsubscribed // presence

	typeGet    // iq
	typeSet    // iq
	typeResult // iq
)

func (t stanzaType) subscription() bool {
	return t >= typeSubscribe && t <= typeUnsubscribed
}

func classify[T text](kind Kind, typ T) stanzaType {
	if string(typ) == "error" {
		return typeError
	}
	switch kind {
	case Message:
		switch string(typ) {
		case "groupchat":
			return typeGroupchat
		case "headline":
			return typeHeadline
		}
		return typeNormal
	case Presence:
		switch string(typ) {
		case "":
			return typeAvailable
		case "unavailable":
			return typeUnavailable
		case "probe":
			return typeProbe
		case "subscribe":
			return typeSubscribe
		case "subscribed":
			return typeSubscribed
		case "unsubscribe":
			return typeUnsubscribe
		case "unsubscribed":
			return typeUnsubscribed
		}
	case IQ:
		switch string(typ) {
		case "get":
			return typeGet
		case "set":
			return typeSet
		case "result":
			return typeResult
		}
	}
	return typeInvalid
}

// sendError is the one rule for whether a refused stanza is answered:
//
//   - never a type='error' stanza (RFC 6120 §8.3.1), whatever its kind;
//   - IQ get and set always (RFC 6120 §8.2.3: they MUST get a response);
//     IQ result never; an IQ with an invalid type gets bad-request;
//   - messages, except headline, which RFC 6121 §8.5.2 drops silently
//     where it cannot be delivered;
//   - presence only for subscribe (RFC 6121 §3.1.2: a subscription request
//     that cannot be routed MUST be answered with an error, so the user's
//     client stops waiting) and for an invalid presence type (RFC 6121
//     §4.7.1: bad-request). Every other presence is dropped silently, as
//     RFC 6121 §8.5 does for presence it will not deliver: approvals and
//     cancellations are fire-and-forget, an error per broadcast presence
//     or probe would multiply with the fan-out and reveal more than it
//     helps (RFC 6120 §10.2), and the relay never forges an 'unsubscribed'
//     or 'unavailable' on a user's behalf: roster and presence state belong
//     to the end servers.
func sendError(kind Kind, st stanzaType) bool {
	switch {
	case st == typeError:
		return false
	case kind == IQ:
		return st != typeResult
	case kind == Message:
		return st != typeHeadline
	case kind == Presence:
		return st == typeSubscribe || st == typeInvalid
	}
	return false
}

// hasResource reports whether a JID has a resourcepart. Per RFC 7622 §3.2
// the first '/' ends the domainpart (a localpart may not contain one), so
// its presence alone makes a JID full; this agrees with jid.SplitString.
func hasResource[T text](j T) bool {
	for i := 0; i < len(j); i++ {
		if j[i] == '/' {
			return true
		}
	}
	return false
}
