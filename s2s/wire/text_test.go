package wire

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkSkipText checks skipText's contract on b from p: every byte it
// steps over is plain character data (class cText), and it stops at a byte
// that needs attention ('<', '&', ']', below 0x20 or from 0x80) or at the
// end. Bytes below 0x20 or from 0x80 are stepped over only in the last
// seven bytes of b, where the caller sees them again when more input comes.
func checkSkipText(t *testing.T, b []byte, p int) {
	t.Helper()
	q := skipText(b, p)
	if q < p || q > len(b) {
		t.Fatalf("skipText(%q, %d) = %d: out of range", b, p, q)
	}
	for i := p; i < q; i++ {
		c := b[i]
		if class[c]&cText == 0 {
			t.Fatalf("skipText(%q, %d) = %d: stepped over %q at %d", b, p, q, c, i)
		}
		if (c < 0x20 || c >= 0x80) && i < len(b)-7 {
			t.Fatalf("skipText(%q, %d) = %d: stepped over %#x at %d, before the last 8 bytes", b, p, q, c, i)
		}
	}
	if q < len(b) {
		switch c := b[q]; {
		case c == '<', c == '&', c == ']', c < 0x20, c >= 0x80:
		default:
			t.Fatalf("skipText(%q, %d) = %d: stopped at plain %q", b, p, q, c)
		}
	}
}

func TestSkipText(t *testing.T) {
	long := strings.Repeat("benchmark text ", 40) // past several windows
	for _, s := range []string{
		"", "a", "away</show>", "in a meeting with the team</status>",
		long + "</body>", long, long + "&amp;", long + "]]>", long + "\xc3\xa9", long + "\n" + long + "<",
		strings.Repeat("a&amp;", 200) + "<", strings.Repeat("x", textWindow-1) + "<",
		strings.Repeat("x", textWindow) + "<", strings.Repeat("x", textWindow+1) + "\x01",
	} {
		for p := 0; p <= len(s) && p < 40; p++ {
			checkSkipText(t, []byte(s), p)
		}
	}
	// Random text over an alphabet where each special byte is rare, so that
	// runs are long and every window position is reached.
	rng := rand.New(rand.NewPCG(1, 2))
	special := []byte("<&]\t\n\x01\x80\xc3\xff")
	for range 3000 {
		b := make([]byte, rng.IntN(700))
		for i := range b {
			if rng.IntN(150) == 0 {
				b[i] = special[rng.IntN(len(special))]
			} else {
				b[i] = byte(' ' + rng.IntN(0x5f))
				if b[i] == '<' || b[i] == '&' || b[i] == ']' {
					b[i] = 'z'
				}
			}
		}
		checkSkipText(t, b, rng.IntN(len(b)+1))
	}
}

func FuzzSkipText(f *testing.F) {
	f.Add([]byte(strings.Repeat("benchmark text ", 30)+"</body>"), uint16(0))
	f.Add([]byte("a&amp;b]]>c\xc3\xa9"), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, p uint16) {
		checkSkipText(t, b, int(p)%(len(b)+1))
	})
}

// BenchmarkSkipText: the text of the bench's message (180 bytes), of a
// presence's <status/> and of its <show/>.
func BenchmarkSkipText(b *testing.B) {
	for _, s := range []string{strings.Repeat("benchmark text ", 12), "in a meeting with the team", "away"} {
		in := []byte(s + "</x>")
		b.Run(fmt.Sprint(len(s)), func(b *testing.B) {
			for b.Loop() {
				if skipText(in, 0) != len(s) {
					b.Fatal("wrong stop")
				}
			}
		})
	}
}
