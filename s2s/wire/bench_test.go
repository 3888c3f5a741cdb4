package wire_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

const benchStanzas = 10000

// benchStream is a Prosody-style header followed by benchStanzas chat
// messages of about 300 bytes each and the closing tag.
var benchStream = func() []byte {
	var b bytes.Buffer
	b.WriteString(prosodyHeader)
	for i := range benchStanzas {
		fmt.Fprintf(&b, "<message from='juliet@capulet.example/balcony-%04d' to='romeo@montague.example' type='chat' id='%08x-5c1d-4f3e-9a2b-7e0c1d2f3a4b' xml:lang='en'>"+
			"<body>But soft, what light through yonder window breaks? It is the east, and Juliet is the sun &amp; moon %d.</body>"+
			"<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n", i, i*7919, i)
	}
	b.WriteString("</stream:stream>")
	return b.Bytes()
}()

// meter measures a benchmark that handles n stanzas per iteration.
type meter struct {
	b   *testing.B
	n   int
	mem runtime.MemStats
	cpu time.Duration
}

func startMeter(b *testing.B, n int) *meter {
	m := &meter{b: b, n: n}
	runtime.ReadMemStats(&m.mem)
	m.cpu = cpuTime()
	b.ResetTimer()
	return m
}

// report reports stanzas per (wall-clock) second, stanzas per CPU second of
// the process, and heap allocations per stanza.
func (m *meter) report() {
	m.b.StopTimer()
	cpu := cpuTime() - m.cpu
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	total := float64(m.n) * float64(m.b.N)
	m.b.ReportMetric(total/m.b.Elapsed().Seconds(), "stanzas/s")
	if cpu > 0 {
		m.b.ReportMetric(total/cpu.Seconds(), "stanzas/cpu-s")
	}
	m.b.ReportMetric(float64(after.Mallocs-m.mem.Mallocs)/total, "allocs/stanza")
}

func BenchmarkFramer(b *testing.B) {
	avg := float64(len(benchStream)-len(prosodyHeader)) / benchStanzas
	b.Logf("stream of %d bytes, %.0f bytes per stanza", len(benchStream), avg)
	src := bytes.NewReader(benchStream)
	r := wire.NewReader(src, wire.Limits{})
	b.SetBytes(int64(len(benchStream)))
	b.ReportAllocs()
	m := startMeter(b, benchStanzas)
	for b.Loop() {
		src.Reset(benchStream)
		r.Reset(src)
		if _, err := r.ReadHeader(); err != nil {
			b.Fatal(err)
		}
		r.SetAuthenticated(true)
		n := 0
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if e.Kind == wire.Message && len(e.To) > 0 {
				n++
			}
		}
		if n != benchStanzas {
			b.Fatalf("read %d stanzas, want %d", n, benchStanzas)
		}
	}
	m.report()
}

// BenchmarkFramerEncodingXML is the baseline: the same stream through
// encoding/xml's Decoder.Token, counting top-level elements.
func BenchmarkFramerEncodingXML(b *testing.B) {
	src := bytes.NewReader(benchStream)
	b.SetBytes(int64(len(benchStream)))
	b.ReportAllocs()
	m := startMeter(b, benchStanzas)
	for b.Loop() {
		src.Reset(benchStream)
		d := xml.NewDecoder(src)
		n, depth := 0, 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			switch tok.(type) {
			case xml.StartElement:
				depth++
			case xml.EndElement:
				depth--
				if depth == 1 {
					n++
				}
			}
		}
		if n != benchStanzas {
			b.Fatalf("read %d stanzas, want %d", n, benchStanzas)
		}
	}
	m.report()
}
