package s2s

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
)

// TestStreamLogAsWith: a stream's logger writes what slog's With would
// have: the stream's attributes first, then the record's, in the server
// logger's groups, through loggers derived from it too.
func TestStreamLogAsWith(t *testing.T) {
	for _, json := range []bool{false, true} {
		newHandler := func(b *bytes.Buffer) slog.Handler {
			opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}
			if json {
				return slog.NewJSONHandler(b, opts)
			}
			return slog.NewTextHandler(b, opts)
		}
		var want, got bytes.Buffer
		wantBase := slog.New(newHandler(&want)).WithGroup("g").With("server", 1)
		gotBase := slog.New(newHandler(&got)).WithGroup("g").With("server", 1)

		l := &link{pair: routing.Pair{From: "a.example", To: "b.example"}, face: policy.Internal}
		logs := func(lg *slog.Logger) {
			lg.Info("hello", "n", 1, slog.Group("sub", "k", "v"))
			lg.With("x", 2).Warn("derived", "n", 3)
			lg.WithGroup("h").Error("grouped", "n", 4)
			lg.Debug("not enabled")
		}
		logs(wantBase.With("face", l.face.String(), "dir", "out", "from", l.pair.From, "to", l.pair.To))
		logs(newStreamLog(gotBase.Handler(), l))
		logs(wantBase.With("face", l.face.String(), "dir", "out", "from", l.pair.From, "to", l.pair.To).With("from", "c.example", "to", "d.example"))
		logs(newStreamLog(newStreamLog(gotBase.Handler(), l).Handler(), &pairLog{from: "c.example", to: "d.example"}))
		if got.Len() == 0 || got.String() != want.String() {
			t.Errorf("json %v: got\n%s\nwant\n%s", json, got.String(), want.String())
		}
	}
}
