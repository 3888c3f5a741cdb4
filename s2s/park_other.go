//go:build !linux

package s2s

// Streams park only on Linux (epoll); elsewhere an idle stream keeps its
// goroutine, waiting on its socket.
type parker struct{}

var parking parker

func canPark() bool { return false }

func (p *parker) add(fd int32, d *deadlineReader) bool { return false }
func (p *parker) remove(fd int32, d *deadlineReader)   {}
