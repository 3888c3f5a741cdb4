package main

import (
	"github.com/spf13/pflag"

	"github.com/fedrelay/fedrelay/config"
)

// configFlags are the flags shared by the commands that load a
// configuration: --config and the overrides of the most used keys.
type configFlags struct {
	path string
	set  *pflag.FlagSet
}

// overridable maps flag names to the configuration keys they override.
var overridable = []struct{ flag, key, usage string }{
	{"log-level", "log.level", "minimum log level: debug, info, warn, error"},
	{"log-format", "log.format", "log format: text or json"},
	{"federation-listen", "federation.listen", "federation face STARTTLS addresses (host:port, comma-separated)"},
	{"federation-listen-tls", "federation.listen_tls", "federation face direct TLS addresses (host:port, comma-separated)"},
	{"internal-listen", "internal.listen", "internal face addresses (host:port, comma-separated)"},
	{"internal-dns-listen", "internal.dns_listen", "internal DNS responder address (host:port)"},
	{"dialback-secret-file", "dialback.secret_file", "file holding the dialback secret"},
	{"admin-listen", "admin.listen", "metrics and health endpoint (host:port, empty to disable)"},
}

func (cf *configFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&cf.path, "config", "c", "", "configuration file (.yaml, .toml or .json); default "+defaultConfigPath)
	for _, o := range overridable {
		if o.key == "federation.listen" || o.key == "federation.listen_tls" || o.key == "internal.listen" {
			fs.StringSlice(o.flag, nil, o.usage)
		} else {
			fs.String(o.flag, "", o.usage)
		}
	}
	cf.set = fs
}

// load reads the configuration with the flags that were set.
func (cf *configFlags) load() (*config.Config, error) {
	if cf.applyDefaultPath() {
		cfg, err := cf.load()
		return cfg, explainDefaultPath(err)
	}
	flags := map[string]*pflag.Flag{}
	for _, o := range overridable {
		flags[o.key] = cf.set.Lookup(o.flag)
	}
	return config.Load(config.Options{Path: cf.path, Flags: flags})
}
