package bench

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, which
// the kernel fixes at 100 on every architecture Go's linux ports run on).
const userHZ = 100

// ProcStat is what /proc tells about one process at one moment.
type ProcStat struct {
	// CPU is user + system CPU time in seconds.
	CPU float64
	// RSS is the resident set now, PeakRSS its high-water mark since the
	// process started or since ResetPeak, both in bytes.
	RSS, PeakRSS int64
	// Threads is the number of threads.
	Threads int
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcStat, error) {
	var ps ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// The command name is in parentheses and may hold spaces: fields are
	// counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ps, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime(14) stime(15): indexes 11 and 12 here.
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ps, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	ps.CPU = float64(ut+st) / userHZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			ps.RSS = kib(v)
		case "VmHWM":
			ps.PeakRSS = kib(v)
		case "Threads":
			ps.Threads, _ = strconv.Atoi(v)
		}
	}
	return ps, nil
}

// RunQueueWait returns how long the threads of process pid have waited,
// runnable, for a CPU since they started: the second field of each
// /proc/<pid>/task/<tid>/schedstat (run_delay, ns), summed. Threads that
// have exited are no longer counted (Go's rarely exit).
func RunQueueWait(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread has just exited
		}
		d, err := parseRunDelay(string(b))
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += d
	}
	return sum, nil
}

// parseRunDelay reads run_delay from a schedstat line: "<on-CPU ns>
// <run_delay ns> <timeslices>".
func parseRunDelay(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("%d fields", len(f))
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(n), nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n * 1024
}

// ResetPeak resets the process's RSS high-water mark (VmHWM) to its current
// RSS, so that a scenario's peak is its own (proc(5), clear_refs value 5).
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// LoadAvg returns the 1-minute load average of the machine.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// MachineCPU returns the whole machine's busy CPU seconds (all cores, every
// mode but idle and iowait) from /proc/stat: what the scenario's processes
// and everything else on the machine used.
func MachineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for i, s := range f[1:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return float64(busy) / userHZ
}

// Host describes the machine and toolchain a run used.
type Host struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	CPUModel  string `json:"cpu_model,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
}

// ThisHost describes this machine.
func ThisHost() Host {
	h := Host{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}
