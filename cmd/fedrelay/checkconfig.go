package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
)

func newCheckConfigCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration and print the effective settings (secrets redacted)",
		Long: "check-config loads the configuration exactly as run would (file, then FEDRELAY_* environment,\n" +
			"then flags), prints the effective settings as YAML with secrets redacted, and exits 0.\n" +
			"A bad configuration exits 2 with one line per problem naming the key; that includes an\n" +
			"internal CA (internal.ca_cert_file, ca_key_file) that is not a CA, has expired or whose key\n" +
			"is not its own.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			// The internal CA is loaded as run would load it: a bad one
			// (not a CA, expired, a key that is not its own) is a bad
			// configuration.
			_, caWarnings, err := app.InternalCA(cfg.Internal, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			src := cfg.Source
			if src == "" {
				src = "(embedded defaults)"
			}
			fmt.Fprintf(out, "# effective configuration from %s\n", src)
			for _, w := range append(cfg.Warnings, caWarnings...) {
				fmt.Fprintf(out, "# warning: %s\n", w)
			}
			return cfg.WriteYAML(out)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}
