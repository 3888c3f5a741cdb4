// Command fedrelay-bench measures fedrelay as operators run it: the relay
// as its own process, driven over real S2S streams on loopback, side by
// side with a minimal forwarder (the floor) and with Prosody. See
// test/bench for what each scenario does and BENCHMARKS.md for the figures.
//
//	fedrelay-bench [--quick] [--reps N] [--json FILE] [--markdown FILE] SCENARIO... | all
//	fedrelay-bench report FILE.json      # BENCHMARKS.md from a run's JSON, on standard output
//	fedrelay-bench list                  # the scenarios
//
// Each scenario prints one JSON object on standard output (one per line);
// progress goes to standard error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fedrelay/fedrelay/test/bench"
)

func main() {
	bench.MaybeRunChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fedrelay-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		quick   = fs.Bool("quick", false, "each scenario small and once (under 30 s each)")
		reps    = fs.Int("reps", 3, "repetitions per scenario in full mode (figures are min/median/max)")
		jsonOut = fs.String("json", "", "also write the results to this file (JSON, one object per line)")
		mdOut   = fs.String("markdown", "", "also write BENCHMARKS.md-style Markdown to this file")
		relay   = fs.String("relay", "", "relay binary to measure (default: build ./cmd/fedrelay of this module)")
		workDir = fs.String("dir", "", "working folder (configurations, logs, profiles); default a temporary one, removed")
		prosody = fs.Bool("prosody", true, "run the Prosody reference where Prosody can run")
		verbose = fs.Bool("v", true, "progress on standard error")
		timeout = fs.Duration("timeout", 2*time.Hour, "give up after this long")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fedrelay-bench [flags] SCENARIO...|all\n       fedrelay-bench report FILE.json\n       fedrelay-bench list\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	switch rest[0] {
	case "list":
		for _, s := range bench.Scenarios() {
			fmt.Fprintf(stdout, "%-11s %s\n", s[0], s[1])
		}
		return 0
	case "report":
		if len(rest) != 2 {
			fmt.Fprintln(stderr, "usage: fedrelay-bench report FILE.json")
			return 2
		}
		f, err := os.Open(rest[1])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		results, err := bench.ReadJSON(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := bench.WriteMarkdown(stdout, results); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *timeout)
	defer cancel2()
	opts := bench.Options{Quick: *quick, Reps: *reps, RelayBin: *relay, WorkDir: *workDir, Prosody: *prosody}
	if *verbose {
		start := time.Now()
		opts.Log = func(format string, args ...any) {
			fmt.Fprintf(stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	results, err := bench.Run(ctx, opts, rest...)
	if werr := bench.WriteJSON(stdout, results); werr != nil && err == nil {
		err = werr
	}
	if *jsonOut != "" {
		if f, ferr := os.Create(*jsonOut); ferr == nil {
			bench.WriteJSON(f, results)
			f.Close()
		} else if err == nil {
			err = ferr
		}
	}
	if *mdOut != "" {
		if f, ferr := os.Create(*mdOut); ferr == nil {
			bench.WriteMarkdown(f, results)
			f.Close()
		} else if err == nil {
			err = ferr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "fedrelay-bench:", err)
		return 1
	}
	for _, r := range results {
		if r.Error != "" {
			return 1
		}
	}
	return 0
}
