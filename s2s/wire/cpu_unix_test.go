//go:build unix

package wire_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time used by the process so far. Benchmarks report
// rates per CPU second too, because this machine is shared and wall-clock
// figures swing with the load of other processes.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
