// Package policy decides whom the organisation federates with and what may
// cross: pure decisions about a remote domain, a direction and a stanza or
// stream. It does no I/O, starts no goroutines and logs nothing; the one
// stateful piece, the rate Limiter, is a separate small type.
//
// # What is decided about
//
// Policy is always about the remote domain: on the federation face the
// peer of the stream, on the internal face the domain the relay stands in
// for (the to of an internal server's stream). A Direction says which way a
// stanza travels: In from the remote domain to ours, Out from ours to it.
//
// Compile (or FromConfig) turns a validated config.Policy into an immutable
// *Policy. On reload the caller compiles a new one, swaps the pointer
// atomically, and calls Policy.Stream with each open stream's StreamState
// on the new Policy: a refused stream is closed with the condition given
// (policy-violation or not-authorized).
//
// # Patterns
//
// "example.org" matches that domain exactly; "*.example.org" matches every
// subdomain at any depth (a.example.org, a.b.example.org) but neither
// example.org itself nor badexample.org. Matching looks the domain up in a
// map, then each of its parent suffixes (at most as many as the longest
// wildcard has labels), so it costs a few map lookups and no allocation.
// Domains are compared in their normalised form: lower-case ASCII with
// IDNA A-labels, as config.NormalizeDomain gives. The policy folds ASCII
// case and a trailing dot itself and refuses names with non-ASCII bytes,
// so a differently spelled name cannot slip past the deny list.
//
// # Domain decision: deny wins
//
// A remote domain named by any policy.deny pattern is refused, whatever
// policy.allow says; otherwise one named by any policy.allow pattern is
// allowed; otherwise policy.default decides. A decision names the most
// specific pattern that matched ("deny[2] *.evil.example"). The domain
// decision applies at stream setup (Policy.Domain, before TLS or dialback
// cost anything: the stream is refused with policy-violation) and again for
// every stanza.
//
// # Rules
//
// Rules refine what an allowed domain may do; they never allow a domain the
// lists refuse. The first rule in configuration order whose match names the
// remote domain applies, alone: later rules are not merged in, and a
// setting the rule leaves empty has its default (all kinds, subscriptions
// allowed, any authentication, no TLS requirement beyond tls.required, the
// global size limit, no rate limit).
//
// # Streams
//
// Policy.Stream refuses, in this order: a denied domain (policy-violation);
// an unencrypted stream when tls.required is set, or on the federation face
// when the rule sets require_tls (policy-violation, RFC 6120 §4.9.3.14);
// a remote domain that authenticated by a method the rule's require_auth
// does not list (not-authorized: RFC 6120 §4.9.3.12 names it for failed
// authentication, and XEP-0220 uses it when policy demands a certificate).
//
// # Stanzas and RFC 6121 at the boundary
//
// Policy.Stanza checks the domain, the rule's kinds, the type attribute,
// the RFC 6121 §3 rule that subscription stanzas (subscribe, subscribed,
// unsubscribe, unsubscribed) carry the sender's bare JID, the rule's
// subscriptions setting for the direction, and the size; Limiter.Limit then
// takes a rate token. Conditions:
//
//	refusal                              condition            type    why
//	deny list, default deny, kinds       not-allowed          cancel  RFC 6120 §8.3.3.10
//	subscriptions denied by a rule       not-allowed          cancel  barred, not malformed
//	invalid type, full-JID subscription  bad-request          modify  RFC 6120 §8.3.3.1
//	size                                 policy-violation     modify  RFC 6120 §8.3.3.12
//	rate                                 resource-constraint  wait    RFC 6120 §8.3.3.18
//
// Subscriptions a rule denies get not-allowed rather than policy-violation:
// RFC 6120 gives policy-violation the types modify or wait (the sender could
// change the stanza or try later), while not-allowed/cancel is the
// condition for an action nobody may perform, which a per-domain ban is.
//
// A full JID in the from of a subscription stanza means the sending server
// failed to stamp the bare JID (RFC 6121 §3.1.2, §3.1.5 …): the JID itself
// is well formed, so bad-request rather than jid-malformed. A full JID in
// the to is legal (the receiving server treats it as bare, §3.1.3) and
// passes. Probes, directed presence and every other presence pass like
// any presence; payloads are never changed.
//
// Whether an error stanza goes back (Decision.Send) follows one rule: never
// for type='error' stanzas or IQ results; always for IQ get and set; for
// messages except headline; for presence only for subscribe (RFC 6121
// §3.1.2 wants the user told) and for an invalid presence type. Other
// presence is dropped silently, as RFC 6121 §8.5 treats presence it will
// not deliver; the relay never forges 'unsubscribed' on a user's behalf.
//
// # Audit
//
// Decision.Record and StreamDecision.Record turn decisions into Records,
// and Record.AppendJSON formats one as a JSON line with domains and
// decision facts only, never a JID or a body.
package policy
