//go:build !unix

package s2s

import (
	"crypto/tls"
	"syscall"
)

// waitReadable cannot wait without reading here: Read does the waiting.
func waitReadable(syscall.RawConn, *rawCall, *tls.Conn) error { return nil }
