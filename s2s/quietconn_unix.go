//go:build unix && !linux

package s2s

import (
	"errors"
	"syscall"
)

// quietIO: no raw system calls for sockets here; the syscall package's
// calls serve writeNow and waitReadable.
const quietIO = false

func sysRead(fd uintptr, p []byte) (n int, again bool, err error) {
	return ioOnce(syscall.Read, fd, p)
}

func sysWrite(fd uintptr, p []byte) (n int, again bool, err error) {
	return ioOnce(syscall.Write, fd, p)
}

// ioOnce calls f (read or write) on fd with p once, again after an
// interruption.
func ioOnce(f func(int, []byte) (int, error), fd uintptr, p []byte) (n int, again bool, err error) {
	for {
		n, err = f(int(fd), p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return 0, true, nil
		case err != nil:
			return 0, false, err
		}
		return n, false, nil
	}
}

func sysPeek(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return false
		}
		return true
	}
}
