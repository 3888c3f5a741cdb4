package policy_test

import (
	"fmt"
	"os"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func Example() {
	p, err := policy.Compile(config.Policy{
		Default: "allow",
		Deny:    []string{"*.evil.example"},
		Rules: []config.Rule{{
			Match:            []string{"partner.example"},
			Kinds:            []string{"message", "presence"},
			SubscriptionsIn:  "deny",
			SubscriptionsOut: "allow",
			RequireAuth:      []string{"external"},
			Rate:             50,
		}},
	}, policy.Options{MaxStanzaBytes: 262144, RequireTLS: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	limiter := policy.NewLimiter(0)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	// A stream header from a denied domain: refuse before TLS or dialback.
	d := p.Domain("spam.evil.example")
	fmt.Println(d.Allowed, d.Condition.Error(), d.Rule)

	// After authentication: partner.example must present a certificate.
	st := policy.StreamState{Face: policy.Federation, Dir: policy.In, Remote: "partner.example", TLS: true, Auth: policy.AuthDialback}
	sd := p.Stream(st)
	fmt.Println(sd.Allowed, sd.Condition.Error(), sd.Rule)

	// Per stanza: decide, then take a rate token.
	msg := policy.Stanza{Kind: policy.Message, Type: "chat", From: "juliet@partner.example/balcony", Size: 420}
	dec := limiter.Limit("partner.example", policy.In, p.Stanza("partner.example", policy.In, msg), func() time.Time { return now })
	fmt.Println(dec.Allowed, dec.Rule)

	sub := policy.Stanza{Kind: policy.Presence, Type: "subscribe", From: "juliet@partner.example", Size: 150}
	dec = p.Stanza("partner.example", policy.In, sub)
	fmt.Println(dec.Allowed, dec.Send, dec.Condition(), dec.ErrorType(), dec.Rule)

	// Every refusal can become an audit line.
	os.Stdout.Write(dec.Record(now, policy.Federation, policy.In, "a.example", "partner.example", policy.Presence).AppendJSON(nil))
	// Output:
	// false policy-violation deny[0] *.evil.example
	// false not-authorized rules[0].require_auth
	// true default allow
	// false true not-allowed cancel rules[0].subscriptions_in
	// {"time":"2026-01-01T12:00:00Z","event":"stanza","face":"federation","dir":"in","from":"partner.example","to":"a.example","local":"a.example","remote":"partner.example","kind":"presence","decision":"refuse","reason":"subscription","rule":"rules[0].subscriptions_in","error":"not-allowed","error_type":"cancel"}
}
