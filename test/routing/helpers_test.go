package routing_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// expectError waits for the error stanza answering id at fake and checks
// its kind, type and condition.
func expectError(t *testing.T, fake *harness.FakeServer, id, kind, errType, cond string) harness.Stanza {
	t.Helper()
	st := fake.Wait(t, "error for "+id, func(s harness.Stanza) bool { return s.ID == id && s.Type == "error" })
	typ, c, text := st.StanzaError()
	if st.Name != kind || typ != errType || c != cond {
		t.Errorf("answer to %s: <%s> error type=%q condition=%q (%q), want <%s> %s %s\n%s",
			id, st.Name, typ, c, text, kind, errType, cond, st.Raw)
	}
	return st
}

// notReceived fails if fake received a stanza with one of the ids.
func notReceived(t *testing.T, fake *harness.FakeServer, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if n := fake.Count(func(s harness.Stanza) bool { return s.ID == id }); n > 0 {
			t.Errorf("%s received %s, which should not have crossed the relay", fake.Name, id)
		}
	}
}

// parse reads the start tag's id, from and to of a stanza written by the
// harness builders.
func parse(t *testing.T, raw string) harness.Element {
	t.Helper()
	tok, err := xml.NewDecoder(strings.NewReader(raw)).Token()
	start, ok := tok.(xml.StartElement)
	if err != nil || !ok {
		t.Fatalf("parse %s: %v", raw, err)
	}
	el := harness.Element{Name: start.Name.Local, Raw: raw}
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			el.ID = a.Value
		case "from":
			el.From = a.Value
		case "to":
			el.To = a.Value
		case "type":
			el.Type = a.Value
		}
	}
	return el
}
