package s2s

import (
	"errors"
	"log/slog"
	"sync"
	"syscall"
)

// parker watches the sockets of parked streams (see deadlineReader.park)
// with an epoll set of its own and one goroutine, which runs only while
// some stream is parked: a parked stream costs its entry here and a timer,
// not a goroutine and its stack.
type parker struct {
	once    sync.Once
	epfd    int
	err     error
	mu      sync.Mutex
	byFD    map[int32]*deadlineReader
	running bool // loop runs (guarded by mu)
}

var parking parker

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// parkPoll is how long the loop waits before it looks whether any stream
// is still parked (it ends when none is).
const parkPoll = 250 // ms

func canPark() bool { return true }

func (p *parker) init() error {
	p.once.Do(func() {
		p.epfd, p.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		p.byFD = make(map[int32]*deadlineReader)
	})
	return p.err
}

// loop wakes the streams whose sockets become readable (or hang up, or
// fail: the resumed owner's read says which), until none is parked.
func (p *parker) loop() {
	var events [64]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], parkPoll)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			// Not expected; parked streams still wake at their deadline
			// or when stopped, and no more park.
			slog.Error("parked streams: epoll_wait failed; streams will no longer park", "err", err)
			p.mu.Lock()
			p.err, p.running = err, false
			p.mu.Unlock()
			return
		}
		for _, ev := range events[:max(n, 0)] {
			p.mu.Lock()
			d := p.byFD[ev.Fd]
			p.mu.Unlock()
			if d != nil {
				d.unpark()
			}
		}
		p.mu.Lock()
		if len(p.byFD) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// add watches fd for d; false if it cannot.
func (p *parker) add(fd int32, d *deadlineReader) bool {
	if p.init() != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false
	}
	if !p.running {
		p.running = true
		go p.loop()
	}
	p.byFD[fd] = d
	// Level-triggered: input that came before this call wakes d at once.
	ev := syscall.EpollEvent{Events: parkEvents, Fd: fd}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		delete(p.byFD, fd)
		return false
	}
	return true
}

// remove stops watching fd (for d, which holds it: the socket is still
// open, so the number is not someone else's yet).
func (p *parker) remove(fd int32, d *deadlineReader) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byFD[fd] == d {
		delete(p.byFD, fd)
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	}
}
