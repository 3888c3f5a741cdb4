package main

import (
	"errors"

	"github.com/fedrelay/fedrelay/config"
)

// defaultConfigPath is the configuration file run and check-config read when
// --config is not given (the path dist/systemd/fedrelay.service and the
// Dockerfile use). Packagers may move it at build time with
// -ldflags "-X main.defaultConfigPath=/usr/local/etc/fedrelay.yaml".
// An explicit --config "" still means no file: the embedded defaults and
// the FEDRELAY_* environment only.
var defaultConfigPath = "/etc/fedrelay/fedrelay.yaml"

// applyDefaultPath fills in defaultConfigPath when --config was not given,
// and reports whether it did.
func (cf *configFlags) applyDefaultPath() bool {
	if cf.path != "" || cf.set == nil {
		return false
	}
	if f := cf.set.Lookup("config"); f != nil && f.Changed {
		return false
	}
	cf.path = defaultConfigPath
	return true
}

// explainDefaultPath says, in the error about a configuration file that
// cannot be read, that the path was the default one, not one given.
func explainDefaultPath(err error) error {
	var ce config.Errors
	if errors.As(err, &ce) {
		for _, e := range ce {
			if e.Key == "--config" {
				e.Reason += " (the default configuration file, read when --config is not given)"
			}
		}
	}
	return err
}
