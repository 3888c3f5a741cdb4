//go:build unix

package s2s

import (
	"crypto/tls"
	"syscall"
)

// waitReadable blocks until the socket has input (or end of file, or an
// error, which the next read reports), honouring its read deadline and
// returning at once when it is closed. It peeks and reads nothing. When it
// has to wait, it first drops the input buffers of quiet, if not nil. call
// is the owner's, for the call's state.
func waitReadable(rc syscall.RawConn, call *rawCall, quiet *tls.Conn) error {
	_, _, err := call.do(rc, rawWait, nil, quiet)
	return err
}
