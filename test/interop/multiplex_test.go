//go:build interop

package interop_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// logMarks are the sizes of the relay's and the peers' logs before a
// scenario, to look at what they logged since.
type logMarks struct{ relay, b, c int64 }

func (l *lab) logMarks() logMarks {
	return logMarks{fileSize(filepath.Join(l.relay.dir, "relay.log")), fileSize(filepath.Join(l.b.dir, "prosody.log")),
		fileSize(filepath.Join(l.c.dir, "logs", "ejabberd.log"))}
}

// checkMultiplexed (scenario 1): the relay's links from the internal
// domains a.test and e.corp.test to b.test (Prosody) and to c.test
// (ejabberd) share one outbound stream each (XEP-0220 §4.3, limits.multiplex):
// the second domain was authenticated by another db:result on the stream
// the first opened, which the peer accepted (its log says so) — or, if the
// peer refused, the relay fell back to a stream per pair, and the messages
// went through either way (the scenario checked that).
func (l *lab) checkMultiplexed(t *testing.T, since logMarks) {
	t.Helper()
	locals := []string{"a.test", "e.corp.test"}
	relayLog := filepath.Join(l.relay.dir, "relay.log")
	for _, p := range []struct {
		remote, gen, log string
		from             int64
		accepted         []string // what the peer logs when it takes the second domain
	}{
		{"b.test", l.pgen.Name, filepath.Join(l.b.dir, "prosody.log"), since.b, []string{"is now authenticated for"}},
		{"c.test", l.egen.Name, filepath.Join(l.c.dir, "logs", "ejabberd.log"), since.c, []string{"Accepted inbound s2s dialback authentication"}},
	} {
		var streams []string
		var shared bool
		for _, si := range l.relay.cur.Server.Streams() {
			if si.Face != "federation" || si.Direction != "out" || !slices.Equal(si.Remote, []string{p.remote}) {
				continue
			}
			streams = append(streams, strings.Join(si.Local, "+")+" via "+si.Peer+" auth="+si.Auth)
			shared = shared || slices.Equal(si.Local, locals)
		}
		refused := grepAll(relayLog, since.relay, "the peer does not take another domain on a stream", "to="+p.remote+" ")
		carried := grepAll(relayLog, since.relay, `msg="outbound pair carried on a shared stream"`, "to="+p.remote+" ")
		switch {
		case shared && len(streams) == 1 && len(carried) == 1:
			// The peer's word for it: it authenticated the second domain
			// on the stream of the first.
			var took []string
			for _, s := range p.accepted {
				took = append(took, grepFrom(p.log, p.from, s)...)
			}
			if len(took) == 0 {
				t.Errorf("%s (%s): the relay carries %v on one stream, but the server's log never says it accepted the second domain", p.remote, p.gen, locals)
			}
			t.Logf("%s (%s): one outbound stream for %v (%s); the server's log: %s", p.remote, p.gen, locals, streams[0],
				strings.TrimSpace(took[len(took)-1]))
		case len(refused) > 0 && len(streams) == len(locals):
			t.Logf("%s (%s) refused a second domain on a stream; the relay fell back to a stream per pair: %v\n\t%s",
				p.remote, p.gen, streams, strings.Join(refused, "\n\t"))
		default:
			t.Errorf("%s (%s): want the relay's links from %v on one shared stream (or, refused, one stream each), got streams %v; relay log:\n\t%s",
				p.remote, p.gen, locals, streams, strings.Join(append(carried, refused...), "\n\t"))
		}
	}
}
