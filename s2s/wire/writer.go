package wire

import (
	"io"
	"sync"
	"unicode/utf8"

	"mellium.im/xmpp/stream"
)

// DefaultWriteBuffer is the batch size of NewWriter.
const DefaultWriteBuffer = 32 << 10

// Writer writes one outgoing S2S stream through a batching buffer. Nothing
// reaches the underlying writer until Flush, or until the buffer fills: the
// connection owner writes what its queue holds and flushes when the queue is
// empty, so that a burst of stanzas becomes a few large writes (and TLS
// records) rather than one per stanza.
//
// The batch buffer is taken from a pool when something is written and given
// back once it is flushed, so that an idle stream holds none (10,000 idle
// streams would otherwise keep 320 MB of empty buffers).
//
// The first write error is kept: every later call returns it. A Writer is
// not safe for concurrent use.
type Writer struct {
	w      io.Writer
	buf    []byte
	pooled *[]byte // the pool's handle of buf, when it came from writeBuffers
	size   int
	lang   string // xml:lang of the header written, for Element fix-ups
	err    error
}

// NewWriter returns a Writer with a DefaultWriteBuffer batch.
func NewWriter(w io.Writer) *Writer { return NewWriterSize(w, DefaultWriteBuffer) }

// NewWriterSize returns a Writer that flushes by itself once size bytes are
// buffered.
func NewWriterSize(w io.Writer, size int) *Writer {
	if size <= 0 {
		size = DefaultWriteBuffer
	}
	return &Writer{w: w, size: size}
}

// writeBuffers recycles DefaultWriteBuffer batches between Writers.
var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, DefaultWriteBuffer); return &b }}

// grab makes sure w has a batch buffer to append to.
func (w *Writer) grab() {
	if w.buf != nil {
		return
	}
	if w.size == DefaultWriteBuffer {
		w.pooled = writeBuffers.Get().(*[]byte)
		w.buf = (*w.pooled)[:0]
		return
	}
	w.buf = make([]byte, 0, w.size)
}

// release gives an empty batch buffer back to the pool.
func (w *Writer) release() {
	if w.buf == nil || len(w.buf) != 0 {
		return
	}
	if w.pooled != nil {
		if cap(w.buf) <= 2*DefaultWriteBuffer {
			*w.pooled = w.buf
			writeBuffers.Put(w.pooled)
		}
		w.pooled = nil
	}
	w.buf = nil
}

// Reset discards buffered output and any error and makes w write to dst, as
// for the TLS connection after STARTTLS.
func (w *Writer) Reset(dst io.Writer) {
	if w.buf != nil {
		w.buf = w.buf[:0]
	}
	w.w, w.lang, w.err = dst, "", nil
	w.release()
}

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush writes out everything buffered.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.w.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
		return err
	}
	w.buf = w.buf[:0]
	w.release()
	return nil
}

// done flushes when the batch is full.
func (w *Writer) done() error {
	if len(w.buf) >= w.size {
		return w.Flush()
	}
	return w.err
}

// WriteHeader writes the XML declaration and a stream header with h's To,
// From, ID, Version and Lang (each left out when empty), the default
// namespace jabber:server, xmlns:stream and, always, xmlns:db (RFC 6120
// §4.7, XEP-0220). Elements written later are fixed up against h.Lang.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	w.grab()
	w.buf = AppendHeader(w.buf, h)
	w.lang = h.Lang
	return w.done()
}

// WriteElement writes an element read from another stream, with the
// namespace and xml:lang fix-ups described at Element.AppendTo.
func (w *Writer) WriteElement(e *Element) error {
	if w.err != nil {
		return w.err
	}
	if !e.NeedsFixup(w.lang) {
		return w.WriteRaw(e.Raw)
	}
	w.grab()
	w.buf = e.AppendTo(w.buf, w.lang)
	return w.done()
}

// WriteRaw writes bytes that are already a sequence of complete elements for
// this stream, such as a queued copy made with Element.AppendTo, or a bounce.
func (w *Writer) WriteRaw(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf)+len(p) > w.size && len(w.buf) > 0 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(p) >= w.size {
		// Too big to batch: write it straight through.
		n, err := w.w.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		w.err = err
		return err
	}
	w.grab()
	w.buf = append(w.buf, p...)
	return w.done()
}

// WriteDirect writes p, a sequence of complete elements for this stream,
// straight to the underlying writer after what is buffered: for a batch the
// caller has already gathered, which a copy into the batch buffer would only
// slow down.
func (w *Writer) WriteDirect(p []byte) error {
	if err := w.Flush(); err != nil {
		return err
	}
	n, err := w.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	w.err = err
	return err
}

// WriteStreamError writes the stream error and the closing </stream:stream>
// (RFC 6120 §4.9). The header must have been written first: send one, even
// if only to close the stream, when the peer's header has just been read.
func (w *Writer) WriteStreamError(se stream.Error) error {
	if w.err != nil {
		return w.err
	}
	w.grab()
	w.buf = AppendStreamError(w.buf, se)
	w.buf = append(w.buf, "</stream:stream>"...)
	return w.done()
}

// WriteClose writes </stream:stream>.
func (w *Writer) WriteClose() error {
	return w.WriteRaw([]byte("</stream:stream>"))
}

// AppendHeader appends what Writer.WriteHeader writes.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, "<?xml version='1.0'?><stream:stream xmlns='"+NSServer+"' xmlns:stream='"+NSStream+"' xmlns:db='"+NSDialback+"'"...)
	dst = appendAttr(dst, " to='", h.To)
	dst = appendAttr(dst, " from='", h.From)
	dst = appendAttr(dst, " id='", h.ID)
	dst = appendAttr(dst, " version='", h.Version)
	dst = appendAttr(dst, " xml:lang='", h.Lang)
	return append(dst, '>')
}

// appendAttr appends an attribute (open is ` name='`) unless v is empty.
func appendAttr[T ~string | ~[]byte](dst []byte, open string, v T) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = append(dst, open...)
	dst = appendEscaped(dst, v, true)
	return append(dst, '\'')
}

// AppendStreamError appends <stream:error>…</stream:error> for se: its
// condition (undefined-condition if se.Err is not a usable name), its
// Content if any (see-other-host), and a <text/> per entry of se.Text. An
// application-specific payload set with ApplicationError is not written.
func AppendStreamError(dst []byte, se stream.Error) []byte {
	cond := se.Err
	if !isCondition(cond) {
		cond = stream.UndefinedCondition.Err
	}
	dst = append(dst, "<stream:error><"...)
	dst = append(dst, cond...)
	dst = append(dst, " xmlns='"+NSStreamError+"'"...)
	if se.Content == "" {
		dst = append(dst, "/>"...)
	} else {
		dst = append(dst, '>')
		dst = appendEscaped(dst, se.Content, false)
		dst = append(dst, "</"...)
		dst = append(dst, cond...)
		dst = append(dst, '>')
	}
	for _, t := range se.Text {
		dst = append(dst, "<text xmlns='"+NSStreamError+"'"...)
		dst = appendAttr(dst, " xml:lang='", t.Lang)
		dst = append(dst, '>')
		dst = appendEscaped(dst, t.Value, false)
		dst = append(dst, "</text>"...)
	}
	return append(dst, "</stream:error>"...)
}

// isCondition reports whether s can be written as an error condition
// element: lower-case letters, digits and '-', starting with a letter.
func isCondition(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// appendEscaped appends s as character data, or as an attribute value
// between single quotes when attr is set. Whatever s holds, the result is
// well-formed: invalid UTF-8 and characters XML does not allow become
// U+FFFD, and whitespace that XML would normalise is written as a
// character reference.
func appendEscaped[T ~string | ~[]byte](dst []byte, s T, attr bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r == utf8.RuneError && size == 1 || !isChar(r) {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '\'':
			dst = append(dst, "&apos;"...)
		case '"':
			dst = append(dst, "&quot;"...)
		case '\r':
			dst = append(dst, "&#xD;"...)
		case '\n', '\t':
			if attr {
				if c == '\n' {
					dst = append(dst, "&#xA;"...)
				} else {
					dst = append(dst, "&#x9;"...)
				}
			} else {
				dst = append(dst, c)
			}
		default:
			if c < 0x20 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, c)
			}
		}
		i++
	}
	return dst
}
