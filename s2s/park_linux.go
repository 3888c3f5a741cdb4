package s2s

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker watches the sockets of parked streams (see deadlineReader.park)
// with an epoll set of its own and one goroutine, which runs only while
// some stream is parked: a parked stream costs its entry here and a timer,
// not a goroutine and its stack.
//
// The loop waits for the set through Go's own poller (the epoll set is a
// pollable file descriptor), not in a blocking epoll_wait. A goroutine
// blocked in a system call keeps its P until the runtime's monitor takes
// it back (after up to 10 ms while another P looks idle), and the loop
// did that for 250 ms at a time, four times a second, as long as any
// stream was parked: an execution trace of the relay at half its maximum
// rate showed it in that call through the whole traced second. On two Ps
// that is half of the relay's CPUs waiting for the monitor (issue 11).
type parker struct {
	once    sync.Once
	epfd    int
	set     *os.File        // epfd as a file, kept for the life of the process (collected, it would close epfd)
	rc      syscall.RawConn // set's, if the poller takes it (nil: the loop blocks in epoll_wait)
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
		if p.err != nil || syscall.SetNonblock(p.epfd, true) != nil {
			return
		}
		// A non-blocking descriptor makes a pollable os.File. A set the
		// poller does not take (no deadlines) leaves the loop blocking in
		// epoll_wait, as before; the file is kept either way.
		p.set = os.NewFile(uintptr(p.epfd), "parked streams")
		if rc, err := p.set.SyscallConn(); err == nil && p.set.SetReadDeadline(time.Time{}) == nil {
			p.rc = rc
		}
	})
	return p.err
}

// wait returns the events of the set: at once if some are ready, else
// when some are, or after parkPoll with none.
func (p *parker) wait(events []syscall.EpollEvent) (int, error) {
	if p.rc == nil {
		return syscall.EpollWait(p.epfd, events, parkPoll)
	}
	var (
		n   int
		err error
	)
	p.set.SetReadDeadline(time.Now().Add(parkPoll * time.Millisecond))
	rerr := p.rc.Read(func(fd uintptr) bool {
		n, err = syscall.EpollWait(int(fd), events, 0)
		return n != 0 || err != nil && !errors.Is(err, syscall.EINTR)
	})
	switch {
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	}
	return n, err
}

// loop wakes the streams whose sockets become readable (or hang up, or
// fail: the resumed owner's read says which), until none is parked.
func (p *parker) loop() {
	var events [64]syscall.EpollEvent
	for {
		n, err := p.wait(events[:])
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
