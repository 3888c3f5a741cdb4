package s2s

import (
	"strings"
	"testing"
)

func TestParseBidi(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"Prosody 13, with its stream limits",
			"<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes><idle-seconds>840</idle-seconds></limits></bidi>", 524288},
		{"ejabberd 24.12", "<bidi xmlns='urn:xmpp:bidi'/>", 0},
		{"ejabberd before #4581: the feature's namespace", "<bidi xmlns='urn:xmpp:features:bidi'/>", 0},
		{"not a count", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>lots</max-bytes></limits></bidi>", 0},
		{"negative", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>-5</max-bytes></limits></bidi>", 0},
		{"overflow", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>99999999999999999999999</max-bytes></limits></bidi>", 0},
		{"limits in another namespace", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:example'><max-bytes>10</max-bytes></limits></bidi>", 0},
		{"max-bytes outside limits", "<bidi xmlns='urn:xmpp:bidi'><max-bytes>10</max-bytes><limits xmlns='urn:xmpp:stream-limits:0'/></bidi>", 0},
		{"max-bytes too deep", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><x><max-bytes>10</max-bytes></x></limits></bidi>", 0},
		{"not well-formed", "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>10", 0},
		{"garbage", "\x00<<", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseBidi([]byte(tc.raw)); got != tc.want {
				t.Errorf("parseBidi(%s) = %d, want %d", tc.raw, got, tc.want)
			}
		})
	}
}

func TestAppendBidiRequest(t *testing.T) {
	raw := string(appendBidiRequest(nil, 524288, 900))
	want := "<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes><idle-seconds>900</idle-seconds></limits></bidi>"
	if raw != want {
		t.Errorf("request %s, want %s", raw, want)
	}
	if got := parseBidi([]byte(raw)); got != 524288 {
		t.Errorf("our own request reads back as max-bytes %d", got)
	}
}

// FuzzBidiRequest feeds arbitrary bytes to the parser of a peer's bidi
// request: it never panics, never returns a negative size, and reads back
// what appendBidiRequest writes.
func FuzzBidiRequest(f *testing.F) {
	f.Add([]byte("<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes><idle-seconds>840</idle-seconds></limits></bidi>"), 524288)
	f.Add([]byte("<bidi xmlns='urn:xmpp:bidi'/>"), 1)
	f.Add([]byte("<bidi xmlns='urn:xmpp:features:bidi'/>"), 10000)
	f.Add([]byte("<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>-1</max-bytes></limits></bidi>"), 0)
	f.Add([]byte("<bidi xmlns='urn:xmpp:bidi'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes><x/>5</max-bytes></limits><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>7</max-bytes></limits></bidi>"), -3)
	f.Fuzz(func(t *testing.T, raw []byte, n int) {
		if got := parseBidi(raw); got < 0 {
			t.Fatalf("negative max-bytes %d from %q", got, raw)
		}
		if n > 0 {
			if got := parseBidi(appendBidiRequest(nil, n, 840)); got != n {
				t.Fatalf("round trip of %d gave %d", n, got)
			}
		}
		// As a child of the features, the request's element offers bidi.
		feats := "<stream:features>" + strings.ReplaceAll(string(raw), "</stream:features>", "") + "</stream:features>"
		if fe, err := parseFeatures([]byte(feats)); err == nil && fe.Bidi && !strings.Contains(feats, "bidi") {
			t.Fatalf("bidi offered by %q", feats)
		}
	})
}
