//go:build unix

package s2s

import (
	"crypto/tls"
	"syscall"
)

// waitReadable blocks until the socket has input (or end of file, or an
// error, which the next read reports), honouring its read deadline and
// returning at once when it is closed. It peeks and reads nothing. When it
// has to wait, it first drops the input buffers of quiet, if not nil.
func waitReadable(rc syscall.RawConn, quiet *tls.Conn) error {
	return rc.Read(func(fd uintptr) bool {
		if sysPeek(fd) {
			return true
		}
		// Not ready: wait for the poller, then peek again.
		if quiet != nil {
			dropTLSInput(quiet)
			quiet = nil
		}
		return false
	})
}
