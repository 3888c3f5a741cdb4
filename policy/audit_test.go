package policy_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func TestAuditJSON(t *testing.T) {
	p := mustCompile(t, config.Policy{Default: "allow", Deny: []string{"evil.example"}}, policy.Options{RequireTLS: true})
	at := time.Date(2026, 3, 4, 5, 6, 7, 8000000, time.FixedZone("CET", 3600))
	const body = "the launch codes are 0000"
	s := policy.Stanza{Kind: policy.Message, Type: "chat", From: "mallory@evil.example/" + body, Size: 400}
	st := policy.StreamState{Face: policy.Federation, Dir: policy.In, Remote: "remote.example", TLS: false, Auth: policy.AuthDialback}

	tests := []struct {
		name string
		rec  policy.Record
		want map[string]any
	}{
		{
			name: "refused stanza",
			rec:  p.Stanza("evil.example", policy.In, s).Record(at, policy.Federation, policy.In, "a.example", "evil.example", policy.Message),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stanza", "face": "federation", "dir": "in",
				"from": "evil.example", "to": "a.example",
				"local": "a.example", "remote": "evil.example", "kind": "message", "decision": "refuse",
				"reason": "deny-list", "rule": "deny[0] evil.example", "error": "not-allowed", "error_type": "cancel",
			},
		},
		{
			name: "refused without an error sent",
			rec: p.Stanza("evil.example", policy.Out, policy.Stanza{Kind: policy.IQ, Type: "result", Size: 10}).
				Record(at, policy.Internal, policy.Out, "a.example", "evil.example", policy.IQ),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stanza", "face": "internal", "dir": "in",
				"from": "a.example", "to": "evil.example", "local": "a.example", "remote": "evil.example", "kind": "iq", "decision": "refuse",
				"reason": "deny-list", "rule": "deny[0] evil.example",
			},
		},
		{
			name: "allowed stanza",
			rec:  p.Stanza("remote.example", policy.In, s).Record(at, policy.Federation, policy.In, "a.example", "remote.example", policy.Message),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stanza", "face": "federation", "dir": "in",
				"from": "remote.example", "to": "a.example", "local": "a.example", "remote": "remote.example", "kind": "message", "decision": "allow",
				"reason": "default", "rule": "default allow",
			},
		},
		{
			name: "refused stream",
			rec:  p.Stream(st).Record(at, st, "a.example"),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stream", "face": "federation", "dir": "in",
				"from": "remote.example", "to": "a.example", "local": "a.example", "remote": "remote.example", "tls": false, "auth": "dialback",
				"decision": "refuse", "reason": "tls", "rule": "tls.required", "error": "policy-violation",
			},
		},
		{
			name: "allowed outbound stream with its peer",
			rec: func() policy.Record {
				st := policy.StreamState{Face: policy.Federation, Dir: policy.Out, Remote: "remote.example", TLS: true, Auth: policy.AuthExternal}
				r := p.Stream(st).Record(at, st, "a.example")
				r.Peer = "192.0.2.7:5269"
				return r
			}(),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stream", "face": "federation", "dir": "out",
				"from": "a.example", "to": "remote.example", "peer": "192.0.2.7:5269", "local": "a.example",
				"remote": "remote.example", "tls": true, "auth": "external",
				"decision": "allow", "reason": "default", "rule": "default allow",
			},
		},
		{
			name: "stream an internal server opened",
			rec: func() policy.Record {
				st := policy.StreamState{Face: policy.Internal, Dir: policy.Out, Remote: "evil.example", TLS: true, Auth: policy.AuthDialback}
				return p.Stream(st).Record(at, st, "a.example")
			}(),
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stream", "face": "internal", "dir": "in",
				"from": "a.example", "to": "evil.example", "local": "a.example",
				"remote": "evil.example", "tls": true, "auth": "dialback",
				"decision": "refuse", "reason": "deny-list", "rule": "deny[0] evil.example", "error": "policy-violation",
			},
		},
		{
			name: "hostile strings stay one line of valid JSON",
			rec: policy.Record{Time: at, Remote: "a\"b\\c\n\x00\x7f\xff\u2028.example", Local: "ü.example",
				Rule: "</script>", Reason: 200},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.008Z", "event": "stanza", "face": "unknown", "dir": "in", "from": "", "to": "",
				"local": "ü.example", "remote": "a\"b\\c\n\x00\x7f\ufffd\u2028.example", "kind": "unknown",
				"decision": "refuse", "reason": "unknown", "rule": "</script>",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			line := tt.rec.AppendJSON(prefix)
			if !bytes.HasPrefix(line, []byte("prefix")) {
				t.Fatalf("AppendJSON did not append: %q", line)
			}
			line = line[len("prefix"):]
			if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
				t.Fatalf("not one line: %q", line)
			}
			if !json.Valid(line) {
				t.Fatalf("invalid JSON: %s", line)
			}
			if bytes.Contains(line, []byte(body)) || bytes.Contains(line, []byte("mallory")) {
				t.Errorf("record carries stanza content: %s", line)
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("fields %v, want %v", keys(got), keys(tt.want))
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v\n%s", k, got[k], v, line)
				}
			}
		})
	}
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ",")
}
