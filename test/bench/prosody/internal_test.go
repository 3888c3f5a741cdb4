package prosody

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestReadStreamStart(t *testing.T) {
	const hdr = `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x>y' from='p.bench' version='1.0' xmlns='jabber:client'>`
	const fixed = `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x>y' from='p.bench' version='1.0' xmlns='jabber:server'>`
	for _, tc := range []struct {
		name string
		in   string
		want string // "" when the input holds no complete start tag
	}{
		{"declaration and features", "<?xml version='1.0'?>" + hdr + "<stream:features/>",
			"<?xml version='1.0'?>" + fixed + "<stream:features/>"},
		{"header alone", hdr, fixed},
		{"double quotes", `<stream:stream xmlns="jabber:client">`, `<stream:stream xmlns="jabber:server">`},
		{"other value kept", `<stream:stream xmlns="jabber:client' a='">`, `<stream:stream xmlns="jabber:client' a='">`},
		{"other namespace kept", `<stream:stream xmlns='jabber:clients'>`, `<stream:stream xmlns='jabber:clients'>`},
		{"body text untouched", hdr + "<message><body>xmlns='jabber:client'</body></message>",
			fixed + "<message><body>xmlns='jabber:client'</body></message>"},
		{"incomplete declaration", "<?xml version='1.0'", ""},
		{"incomplete tag", "<?xml version='1.0'?><stream:stream xmlns='jabber:client'", ""},
		{"'>' in a value", "<stream:stream id='>", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readStreamStart(strings.NewReader(tc.in))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestReadStreamStartByteByByte: a header split across reads is found once
// complete.
func TestReadStreamStartByteByByte(t *testing.T) {
	in := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
	got, err := readStreamStart(&oneByte{s: in})
	if want := strings.Replace(in, "jabber:client", "jabber:server", 1); err != nil || string(got) != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}

type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestParseProcAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0209007F:1466", "127.0.9.2:5222"},
		{"0100007F:14A5", "127.0.0.1:5285"},
		{"00000000:0016", "0.0.0.0:22"},
		{"00000000000000000000000001000000:1F90", "[::1]:8080"},
		{"0000000000000000FFFF00000209007F:1466", "127.0.9.2:5222"},
	} {
		got, err := parseProcAddr(tc.in)
		if err != nil || got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007:0016", "zz00007F:0016", "0100007F:10000"} {
		if got, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) = %v, want an error", bad, got)
		}
	}
}

func TestLuaString(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/x":      `"/tmp/x"`,
		`a"b\c`:       `"a\"b\\c"`,
		"new\nline":   `"new\010line"`,
		"été":         `"été"`,
		"/tmp/x]]--y": `"/tmp/x]]--y"`,
	} {
		if got := luaString(in); got != want {
			t.Errorf("luaString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestListening: a socket this process listens on is found as its own, and
// an address nobody listens on is not.
func TestListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.93.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := netip.MustParseAddrPort(l.Addr().String())
	if ok, err := listening(os.Getpid(), addr); !ok || err != nil {
		t.Errorf("listening(self, %s) = %v, %v; want true", addr, ok, err)
	}
	other := netip.AddrPortFrom(addr.Addr(), addr.Port()+1)
	if ok, err := listening(os.Getpid(), other); ok || err != nil {
		t.Errorf("listening(self, %s) = %v, %v; want false", other, ok, err)
	}
	if ok, err := listening(1, addr); ok {
		t.Errorf("listening(1, %s) = %v, %v; want false: the socket is ours", addr, ok, err)
	}
}

// FuzzReadStreamStart: whatever the server sends, readStreamStart ends
// (error or start tag), never returns more than it read, and changes at
// most the default namespace's value, keeping the length.
func FuzzReadStreamStart(f *testing.F) {
	for _, s := range []string{
		"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'><stream:features/>",
		`<stream:stream xmlns="jabber:client' a='">`, "<stream:stream id='>", "<?xml", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readStreamStart(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(got) > len(data) {
			t.Fatalf("returned %d bytes of %d read", len(got), len(data))
		}
		if !bytes.Equal(got, data[:len(got)]) && !bytes.Equal(bytes.ReplaceAll(got, []byte("jabber:server"), []byte("jabber:client")), data[:len(got)]) {
			t.Fatalf("changed more than the namespace:\n%q\n%q", data[:len(got)], got)
		}
	})
}
