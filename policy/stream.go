package policy

import (
	"crypto/sha256"

	"mellium.im/xmpp/stream"
)

// StreamState is what a stream has established about the remote domain.
type StreamState struct {
	// Face is the face the stream is on. The zero Face counts as
	// Federation, the stricter.
	Face Face
	// Dir is the direction the stream's stanzas travel; it is recorded,
	// not judged.
	Dir Direction
	// Remote is the remote domain: the peer on the federation face, the
	// domain the relay stands in for on the internal face.
	Remote string
	// TLS reports whether the stream is encrypted.
	TLS bool
	// Auth is how the remote domain authenticated on a federation stream:
	// AuthExternal if its certificate was verified (a CA-valid certificate
	// for it, DANE or a pinned key), AuthDialback if it was verified by
	// dialback alone, AuthNone if neither has happened yet. On an outbound
	// link the relay authenticates itself by dialback or SASL EXTERNAL;
	// what counts there is how the peer proved it is the remote domain:
	// AuthExternal by certificate, DANE or pin, AuthDialback when only DNS
	// vouches for it.
	Auth Auth
}

// StreamDecision is the verdict on a stream, or on one remote domain of a
// multiplexed stream.
type StreamDecision struct {
	// Allowed reports whether the stream may go on.
	Allowed bool
	// Reason is what decided; for an allowed stream, ReasonAllowList or
	// ReasonDefault.
	Reason Reason
	// Rule names the configuration entry that decided ("deny[0]
	// evil.example", "tls.required", "rules[1].require_auth").
	Rule string
	// Condition is the stream error to close with when refused:
	// policy-violation for the deny list and TLS, not-authorized for an
	// authentication method the rule does not accept. Zero when allowed.
	//
	// To refuse just one dialback pair on a stream that carries others,
	// answer its db:result with type='error' and the same condition name
	// (both are XEP-0220 dialback error conditions) instead of closing.
	Condition stream.Error
}

// Domain decides a remote domain alone: the deny and allow lists and the
// default, deny winning. Call it as soon as the remote domain is known (the
// stream header's from on the federation face, its to on the internal
// face, a new dialback pair, an SRV query on the internal DNS responder),
// before TLS or dialback cost anything.
//
// remote should be the normalised form (config.NormalizeDomain: lower-case
// ASCII, IDNA A-labels). Domain folds ASCII case and drops a trailing dot
// itself, and refuses a name with non-ASCII bytes (ReasonDomain) rather
// than risk comparing a U-label that a deny entry names as an A-label.
func (p *Policy) Domain(remote string) StreamDecision {
	r := resolve(p, remote)
	if !r.allowed {
		return StreamDecision{Reason: r.reason, Rule: r.label, Condition: stream.PolicyViolation}
	}
	return StreamDecision{Allowed: true, Reason: r.reason, Rule: r.label}
}

// Stream decides a stream once its security is known: Domain first, then
// TLS (tls.required on every stream; the first matching rule's require_tls
// on federation streams), then authentication (the rule's require_auth on
// federation streams, judged only once st.Auth is not AuthNone). On the
// internal face the peer is one of our own servers, so the remote domain's
// TLS and authentication requirements do not apply there.
//
// Call it after TLS and again after authentication; and after a reload,
// call it on the new Policy with each open stream's state to find the
// streams the new policy refuses, and close those with d.Condition.
func (p *Policy) Stream(st StreamState) StreamDecision {
	r := resolve(p, st.Remote)
	if !r.allowed {
		return StreamDecision{Reason: r.reason, Rule: r.label, Condition: stream.PolicyViolation}
	}
	federation := st.Face != Internal
	if !st.TLS {
		if p.requireTLS {
			return StreamDecision{Reason: ReasonTLS, Rule: labelTLSRequired, Condition: stream.PolicyViolation}
		}
		if federation && r.rule != nil && r.rule.requireTLS {
			return StreamDecision{Reason: ReasonTLS, Rule: r.rule.tlsLabel, Condition: stream.PolicyViolation}
		}
	}
	if federation && r.rule != nil && r.rule.auth != 0 && st.Auth != AuthNone && r.rule.auth&st.Auth.bit() == 0 {
		return StreamDecision{Reason: ReasonAuth, Rule: r.rule.authLabel, Condition: stream.NotAuthorized}
	}
	if federation && st.Auth == AuthDialback && p.secureAuth && (r.rule == nil || !r.rule.insecure) {
		return StreamDecision{Reason: ReasonInsecure, Rule: labelSecureAuth, Condition: stream.PolicyViolation}
	}
	return StreamDecision{Allowed: true, Reason: r.reason, Rule: r.label}
}

// Trust is what authenticates one remote domain (federation.secure_auth
// and the matching rule's insecure and pin_sha256).
type Trust struct {
	// Secure reports whether the domain must be authenticated by
	// certificate, DANE or pin: secure_auth is on and no rule marks the
	// domain insecure.
	Secure bool
	// Pins are the SHA-256 digests of SubjectPublicKeyInfo the domain's
	// certificate must have one of; when there are pins, they alone
	// authenticate the domain, whatever a CA or DANE say.
	Pins [][sha256.Size]byte
	// Rule names the entry that decided ("federation.secure_auth",
	// "rules[2].insecure", "rules[0].pin_sha256"), "" when nothing did.
	Rule string
}

// Trust says how the remote domain may be authenticated.
func (p *Policy) Trust(remote string) Trust {
	r := resolve(p, remote)
	t := Trust{Secure: p.secureAuth}
	if p.secureAuth {
		t.Rule = labelSecureAuth
	}
	if r.rule != nil {
		if r.rule.insecure {
			t.Secure, t.Rule = false, r.rule.trustLabel
		}
		if len(r.rule.pins) > 0 {
			t.Pins, t.Rule = r.rule.pins, r.rule.trustLabel
		}
	}
	return t
}

// Pinned reports whether spki (a DER SubjectPublicKeyInfo) has one of the
// pinned digests.
func (t Trust) Pinned(spki []byte) bool {
	sum := sha256.Sum256(spki)
	for _, p := range t.Pins {
		if p == sum {
			return true
		}
	}
	return false
}
