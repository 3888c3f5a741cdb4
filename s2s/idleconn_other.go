//go:build !unix

package s2s

import "syscall"

// waitReadable cannot wait without reading here: Read does the waiting.
func waitReadable(syscall.RawConn, func()) error { return nil }
