package s2s

import (
	"context"
	"log/slog"
	"net"
)

// streamLog is the handler of a stream's logger. It adds the stream's
// attributes (its source's logAttrs) to each record as the record is
// written, where slog's With would format them ahead of time into a handler
// of the stream's own: a clone of the server's handler with the attributes
// preformatted, a few hundred bytes that an idle stream held for nothing
// (issue 11). What is written is the same: the stream's attributes come
// first, then the record's, in the groups of the server's logger.
type streamLog struct {
	next slog.Handler
	src  logSource
}

// A logSource gives a stream's attributes for its log records. Values that
// may change while the stream lives are captured when the logger is made,
// as With would: logAttrs runs on whatever goroutine logs.
type logSource interface {
	logAttrs(a []slog.Attr) []slog.Attr
}

// newStreamLog returns a logger that writes to next with src's attributes.
func newStreamLog(next slog.Handler, src logSource) *slog.Logger {
	return slog.New(&streamLog{next: next, src: src})
}

func (h *streamLog) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *streamLog) Handle(ctx context.Context, r slog.Record) error {
	var buf [6]slog.Attr
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(h.src.logAttrs(buf[:0])...)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, nr)
}

// WithAttrs and WithGroup (a logger derived from a stream's, rare) format
// the stream's attributes ahead, as With would have.
func (h *streamLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.next.WithAttrs(h.src.logAttrs(nil)).WithAttrs(attrs)
}

func (h *streamLog) WithGroup(name string) slog.Handler {
	return h.next.WithAttrs(h.src.logAttrs(nil)).WithGroup(name)
}

// logAttrs: an outbound link's face, direction and pair, all fixed.
func (l *link) logAttrs(a []slog.Attr) []slog.Attr {
	return append(a, slog.String("face", l.face.String()), slog.String("dir", "out"),
		slog.String("from", l.pair.From), slog.String("to", l.pair.To))
}

// bidiLog adds, after a link's own, the address of the peer whose inbound
// stream the link writes on (bidi).
type bidiLog struct{ raw net.Conn }

func (b bidiLog) logAttrs(a []slog.Attr) []slog.Attr {
	return append(a, slog.String("bidi", b.raw.RemoteAddr().String()))
}

// logAttrs: an inbound stream's face and the peer's address, both fixed
// for the connection's life.
func (c *inConn) logAttrs(a []slog.Attr) []slog.Attr {
	return append(a, slog.String("face", c.face.String()), slog.String("dir", "in"),
		slog.String("peer", c.raw.RemoteAddr().String()))
}

// pairLog adds the stream header's addresses as they were when the logger
// was made (the owner changes them on a restart).
type pairLog struct{ from, to string }

func (p *pairLog) logAttrs(a []slog.Attr) []slog.Attr {
	return append(a, slog.String("from", p.from), slog.String("to", p.to))
}
