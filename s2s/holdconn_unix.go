//go:build unix

package s2s

import "syscall"

// writeNow writes p to the socket rc as far as it takes it without
// waiting, and returns how much it took. A full socket is not an error.
//
// It writes through Control, not RawConn.Write: Write first checks the
// socket's write deadline, which the link's writer set for its last
// write, and which has passed when the link's stanzas went out inline for
// longer than limits.write_timeout (the first version lost a stanza to
// it: an inline write failed with a timeout that no write had met).
// Control skips the poller's write lock too, which only a write that may
// wait needs: the caller holds the holdConn, so every other write to the
// socket is gathered meanwhile (tryHold refused while one was under way).
func writeNow(rc syscall.RawConn, call *rawCall, p []byte) (int, error) {
	n, werr, err := call.do(rc, rawWriteNow, p, nil)
	if werr == nil {
		werr = err
	}
	return n, werr
}
