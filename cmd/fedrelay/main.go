package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/config"
)

// Exit statuses. Configuration errors exit 2 so that service managers and
// scripts can tell "will never start" from "failed at run time".
const (
	exitOK        = 0
	exitFailure   = 1
	exitBadConfig = 2
)

// exitError carries the exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line args and returns the exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, err)
	var ee *exitError
	var ce config.Errors
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce):
		return exitBadConfig
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "fedrelay",
		Short: "XMPP federation relay: the edge between internal XMPP servers and the public federation",
		// Errors are printed once, by execute.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(newRunCmd(), newCheckConfigCmd(), newResolveCmd(), newVersionCmd(), newDemoCmd(),
		newStatusCmd(), newStreamsCmd(), newBreakersCmd(), newCloseCmd(), newReloadCmd(), newQueueCmd(), newPolicyCmd())
	return root
}
