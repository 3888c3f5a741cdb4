package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"

	"github.com/fedrelay/fedrelay/config"
)

// Direction is the way a stanza crosses the relay, seen from the
// organisation.
type Direction uint8

const (
	// In is from the remote domain to one of our internal domains.
	In Direction = iota + 1
	// Out is from one of our internal domains to the remote domain.
	Out
)

// String returns "in", "out" or "unknown".
func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "unknown"
}

// Face is the side of the relay a stream belongs to.
type Face uint8

const (
	// Federation is the public face: the peer of the stream is the remote
	// domain itself.
	Federation Face = iota + 1
	// Internal is the face toward the organisation's own servers: the peer
	// is one of ours and the remote domain is the one the relay stands in
	// for.
	Internal
)

// String returns "federation", "internal" or "unknown".
func (f Face) String() string {
	switch f {
	case Federation:
		return "federation"
	case Internal:
		return "internal"
	}
	return "unknown"
}

// Kind is a stanza's element name in jabber:server.
type Kind uint8

const (
	// Message is <message/>.
	Message Kind = iota + 1
	// Presence is <presence/>.
	Presence
	// IQ is <iq/>.
	IQ
)

// String returns "message", "presence", "iq" or "unknown".
func (k Kind) String() string {
	switch k {
	case Message:
		return "message"
	case Presence:
		return "presence"
	case IQ:
		return "iq"
	}
	return "unknown"
}

func (k Kind) bit() uint8 { return 1 << k }

// ParseKind returns the Kind for a stanza element's local name ("message",
// "presence", "iq"), or 0 for anything else. It takes the name as a string
// or as the framer's bytes without allocating.
func ParseKind[T ~string | ~[]byte](name T) Kind {
	switch string(name) {
	case "message":
		return Message
	case "presence":
		return Presence
	case "iq":
		return IQ
	}
	return 0
}

// Auth is how the remote domain proved its identity on a stream.
type Auth uint8

const (
	// AuthNone means not yet: the stream has not authenticated the remote
	// domain, so authentication requirements are not judged.
	AuthNone Auth = iota
	// AuthExternal is SASL EXTERNAL or a verified certificate (XEP-0178).
	AuthExternal
	// AuthDialback is Server Dialback (XEP-0220).
	AuthDialback
)

// String returns "none", "external", "dialback" or "unknown".
func (a Auth) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthExternal:
		return "external"
	case AuthDialback:
		return "dialback"
	}
	return "unknown"
}

func (a Auth) bit() uint8 { return 1 << a }

// Reason says which part of the policy decided. Allowed decisions carry
// ReasonDefault or ReasonAllowList; every other reason is a refusal.
type Reason uint8

const (
	// ReasonDefault: no list names the remote domain, policy.default decided.
	ReasonDefault Reason = iota + 1
	// ReasonAllowList: policy.allow names the remote domain.
	ReasonAllowList
	// ReasonDenyList: policy.deny names the remote domain.
	ReasonDenyList
	// ReasonDomain: the remote domain is empty, too long or not in ASCII
	// (A-label) form, so no list can be trusted to match it.
	ReasonDomain
	// ReasonKind: the matching rule's kinds exclude the stanza's kind.
	ReasonKind
	// ReasonType: the type attribute is not valid for the stanza's kind.
	ReasonType
	// ReasonFullJID: a presence subscription stanza from a full JID.
	ReasonFullJID
	// ReasonSubscription: the matching rule denies presence subscription
	// stanzas in this direction.
	ReasonSubscription
	// ReasonSize: the stanza is larger than the size limit.
	ReasonSize
	// ReasonRate: the remote domain's token bucket is empty.
	ReasonRate
	// ReasonTLS: the stream is not encrypted and TLS is required.
	ReasonTLS
	// ReasonAuth: the remote domain authenticated by a method the matching
	// rule does not accept.
	ReasonAuth
	// ReasonInsecure: federation.secure_auth is on and the remote domain
	// proved itself by dialback alone (no certificate, DANE or pin), but
	// no rule marks it insecure.
	ReasonInsecure
)

var reasonNames = [...]string{
	ReasonDefault:      "default",
	ReasonAllowList:    "allow-list",
	ReasonDenyList:     "deny-list",
	ReasonDomain:       "domain",
	ReasonKind:         "kind",
	ReasonType:         "type",
	ReasonFullJID:      "full-jid",
	ReasonSubscription: "subscription",
	ReasonSize:         "size",
	ReasonRate:         "rate",
	ReasonTLS:          "tls",
	ReasonAuth:         "auth",
	ReasonInsecure:     "insecure",
}

// String returns the reason's short name as written in audit records
// ("deny-list", "size", …), or "unknown".
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}

// Labels of the decisions that no configuration entry makes.
const (
	labelDomain       = "remote domain not in normalised ASCII form"
	labelKind         = "unknown stanza kind"
	labelIQType       = "rfc6120 §8.2.3 iq type"
	labelPresenceType = "rfc6121 §4.7.1 presence type"
	labelBareJID      = "rfc6121 §3 subscription from a bare jid"
	labelTLSRequired  = "tls.required"
	labelSecureAuth   = "federation.secure_auth"
	labelMaxBytes     = "limits.max_stanza_bytes"
)

// maxDomain is the longest domainpart RFC 7622 §3.2 allows, in bytes.
const maxDomain = 1023

// Options are the settings outside config.Policy that the decisions use.
type Options struct {
	// MaxStanzaBytes is limits.max_stanza_bytes, the size limit for remote
	// domains whose rule sets none (and the ceiling of those that do). Zero
	// means no limit.
	MaxStanzaBytes int
	// RequireTLS is tls.required: every stream, on either face, must be
	// encrypted.
	RequireTLS bool
	// SecureAuth is federation.secure_auth: a remote domain must be
	// authenticated by certificate, DANE or pin (Auth external) unless its
	// rule says insecure.
	SecureAuth bool
}

// Policy is a compiled policy: an immutable value, safe for any number of
// goroutines. Compile a new one on reload and swap the pointer (an
// atomic.Pointer[Policy] suits); decisions never change a Policy. A zero
// Policy, made without Compile, refuses every domain.
type Policy struct {
	defaultAllow bool
	defaultLabel string
	allowLabels  []string // "allow[i] pattern"
	denyLabels   []string // "deny[i] pattern"
	table        table
	rules        []rule
	requireTLS   bool
	secureAuth   bool
	explain      Explain
	maxBytes     int
}

// Explain is how much a refusal tells the federation (policy.explain).
type Explain uint8

const (
	// ExplainBrief: a generic sentence that names no rule, address or
	// host. The zero value.
	ExplainBrief Explain = iota
	// ExplainNone: the error condition alone.
	ExplainNone
	// ExplainFull: the sentence and the rule that decided.
	ExplainFull
)

// Explain returns policy.explain.
func (p *Policy) Explain() Explain { return p.explain }

// rule is one compiled config.Rule with the labels of its decisions.
type rule struct {
	kinds      uint8 // Kind bits that may cross
	subsIn     bool
	subsOut    bool
	auth       uint8 // Auth bits accepted; zero accepts any
	requireTLS bool
	maxBytes   int // effective limit, the lower of the rule's and the global one
	rate       float64
	burst      int
	insecure   bool
	pins       [][sha256.Size]byte

	kindsLabel   string
	subsInLabel  string
	subsOutLabel string
	authLabel    string
	tlsLabel     string
	sizeLabel    string
	rateLabel    string
	trustLabel   string
}

// FromConfig compiles c.Policy with limits.max_stanza_bytes and tls.required
// from the same configuration.
func FromConfig(c *config.Config) (*Policy, error) {
	return Compile(c.Policy, Options{MaxStanzaBytes: c.Limits.MaxStanzaBytes, RequireTLS: c.TLS.Required,
		SecureAuth: c.Federation.SecureAuth})
}

// Compile turns a policy section into a Policy. It expects what config
// validation produces but checks again, so a hand-built config.Policy is
// safe too: patterns are normalised with config.NormalizePattern and every
// enumerated value is checked. The error names the first bad key.
func Compile(c config.Policy, o Options) (*Policy, error) {
	p := &Policy{requireTLS: o.RequireTLS, secureAuth: o.SecureAuth, maxBytes: max(o.MaxStanzaBytes, 0)}
	switch c.Default {
	case "allow":
		p.defaultAllow = true
	case "deny":
	default:
		return nil, fmt.Errorf("policy.default: %q: must be allow or deny", c.Default)
	}
	p.defaultLabel = "default " + c.Default
	switch c.Explain {
	case "", "brief":
	case "none":
		p.explain = ExplainNone
	case "full":
		p.explain = ExplainFull
	default:
		return nil, fmt.Errorf("policy.explain: %q: must be none, brief or full", c.Explain)
	}

	b := newTableBuilder()
	var err error
	if p.allowLabels, err = b.addList("policy.allow", "allow", c.Allow, listAllow); err != nil {
		return nil, err
	}
	if p.denyLabels, err = b.addList("policy.deny", "deny", c.Deny, listDeny); err != nil {
		return nil, err
	}
	p.rules = make([]rule, len(c.Rules))
	for i, cr := range c.Rules {
		key := fmt.Sprintf("policy.rules[%d]", i)
		if len(cr.Match) == 0 {
			return nil, errors.New(key + ".match: required: the domain patterns this rule applies to")
		}
		for j, s := range cr.Match {
			if err := b.addRule(fmt.Sprintf("%s.match[%d]", key, j), s, i); err != nil {
				return nil, err
			}
		}
		r, err := compileRule(cr, fmt.Sprintf("rules[%d]", i), p.maxBytes)
		if err != nil {
			return nil, fmt.Errorf("policy.%w", err)
		}
		p.rules[i] = r
	}
	p.table = b.build()
	return p, nil
}

func compileRule(c config.Rule, name string, global int) (rule, error) {
	r := rule{
		kindsLabel:   name + ".kinds",
		subsInLabel:  name + ".subscriptions_in",
		subsOutLabel: name + ".subscriptions_out",
		authLabel:    name + ".require_auth",
		tlsLabel:     name + ".require_tls",
		sizeLabel:    labelMaxBytes,
		rateLabel:    name + ".rate",
		trustLabel:   name + ".insecure",
		requireTLS:   c.RequireTLS,
		insecure:     c.Insecure,
		maxBytes:     global,
	}
	if len(c.Kinds) == 0 {
		r.kinds = Message.bit() | Presence.bit() | IQ.bit()
	}
	for j, k := range c.Kinds {
		kind := ParseKind(k)
		if kind == 0 {
			return r, fmt.Errorf("%s.kinds[%d]: %q: must be message, presence or iq", name, j, k)
		}
		r.kinds |= kind.bit()
	}
	subs := func(key, v, fallback string) (bool, error) {
		if v == "" {
			v = fallback
		}
		switch v {
		case "", "allow":
			return true, nil
		case "deny":
			return false, nil
		}
		return false, fmt.Errorf("%s.%s: %q: must be allow or deny", name, key, v)
	}
	var err error
	if _, err = subs("subscriptions", c.Subscriptions, ""); err != nil {
		return r, err
	}
	if r.subsIn, err = subs("subscriptions_in", c.SubscriptionsIn, c.Subscriptions); err != nil {
		return r, err
	}
	if r.subsOut, err = subs("subscriptions_out", c.SubscriptionsOut, c.Subscriptions); err != nil {
		return r, err
	}
	for j, a := range c.RequireAuth {
		switch a {
		case "external":
			r.auth |= AuthExternal.bit()
		case "dialback":
			r.auth |= AuthDialback.bit()
		default:
			return r, fmt.Errorf("%s.require_auth[%d]: %q: must be external or dialback", name, j, a)
		}
	}
	for j, pin := range c.PinSHA256 {
		b64, err := config.ParsePin(pin)
		if err != nil {
			return r, fmt.Errorf("%s.pin_sha256[%d]: %q: %v", name, j, pin, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(b64)
		r.pins = append(r.pins, [sha256.Size]byte(raw))
	}
	if len(r.pins) > 0 {
		r.trustLabel = name + ".pin_sha256"
	}
	switch {
	case c.MaxStanzaBytes < 0:
		return r, fmt.Errorf("%s.max_stanza_bytes: %d: must not be negative", name, c.MaxStanzaBytes)
	case c.MaxStanzaBytes > 0 && (global == 0 || c.MaxStanzaBytes < global):
		r.maxBytes = c.MaxStanzaBytes
		r.sizeLabel = name + ".max_stanza_bytes"
	}
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return r, fmt.Errorf("%s.rate: %v: must be a number of stanzas per second, not negative", name, c.Rate)
	case c.Burst < 0:
		return r, fmt.Errorf("%s.burst: %d: must not be negative", name, c.Burst)
	case c.Rate > 0:
		r.rate = c.Rate
		r.burst = c.Burst
		if r.burst == 0 {
			// As config fills it: one second's worth, at least one.
			r.burst = max(1, int(math.Ceil(c.Rate)))
		}
	}
	return r, nil
}
