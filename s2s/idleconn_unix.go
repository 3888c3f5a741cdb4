//go:build unix

package s2s

import (
	"crypto/tls"
	"syscall"
)

// waitReadable blocks until the socket has input (or end of file, or an
// error, which the next read reports), honouring its read deadline and
// returning at once when it is closed. It peeks and reads nothing. When it
// has to wait, it first drops the input buffers of quiet, if not nil. w
// holds the wait's state (its owner's, one wait at a time).
func waitReadable(rc syscall.RawConn, w *readableWait, quiet *tls.Conn) error {
	if w.ready == nil {
		w.ready = w.peek
	}
	w.quiet = quiet
	err := rc.Read(w.ready)
	w.quiet = nil
	return err
}

func (w *readableWait) peek(fd uintptr) bool {
	if sysPeek(fd) {
		return true
	}
	// Not ready: wait for the poller, then peek again.
	if w.quiet != nil {
		dropTLSInput(w.quiet)
		w.quiet = nil
	}
	return false
}
