//go:build unix

package s2s

import (
	"errors"
	"syscall"
)

// waitReadable blocks until the socket has input (or end of file, or an
// error, which the next read reports), honouring its read deadline and
// returning at once when it is closed. It peeks and reads nothing. When it
// has to wait, it calls idle first.
func waitReadable(rc syscall.RawConn, idle func()) error {
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK) {
				return true
			}
			// Not ready: wait for the poller, then peek again.
			if idle != nil {
				idle()
				idle = nil
			}
			return false
		}
	})
}
