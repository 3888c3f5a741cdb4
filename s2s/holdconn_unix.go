//go:build unix

package s2s

import (
	"errors"
	"syscall"
)

// writeNow writes p to the socket rc as far as it takes it without
// waiting, and returns how much it took. A full socket is not an error.
func writeNow(rc syscall.RawConn, p []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK) {
					werr = err
				}
				break
			}
		}
		return true // done, whatever came of it: never wait for the poller
	})
	if werr == nil {
		werr = err
	}
	return n, werr
}
