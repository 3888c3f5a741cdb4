//go:build linux

package s2s

import (
	"syscall"
	"unsafe"
)

// quietIO: raw system calls for sockets (quietconn.go).
const quietIO = true

// sysRead reads once from the non-blocking socket fd into p (not empty):
// again reports that nothing is there yet (wait in the poller).
func sysRead(fd uintptr, p []byte) (n int, again bool, err error) {
	return rawIO(syscall.SYS_READ, fd, p)
}

// sysWrite writes once to the non-blocking socket fd from p (not empty):
// again reports that the socket took nothing (its buffer is full).
func sysWrite(fd uintptr, p []byte) (n int, again bool, err error) {
	return rawIO(syscall.SYS_WRITE, fd, p)
}

// rawIO makes the read or write system call trap on fd with p (not
// empty), once, again after an interruption.
func rawIO(trap, fd uintptr, p []byte) (n int, again bool, err error) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), false, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, true, nil
		}
		return 0, false, e
	}
}

// sysPeek reports whether the non-blocking socket fd has input (or end of
// file, or an error, which the next read reports), reading nothing.
func sysPeek(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
