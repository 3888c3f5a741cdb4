// Package config turns the configuration file, the environment and
// command-line flags into one validated Config of plain structs: defaults
// filled, durations parsed, addresses and domain names checked and
// normalised, the dialback secret read. It is the only package of fedrelay
// that reads configuration files, environment variables or flags.
//
// Files are YAML by default, TOML or JSON by extension (viper). Every scalar
// or list key can be overridden from the environment as
// FEDRELAY_<SECTION>_<KEY> (lists comma-separated), and the important ones by
// flags. Unknown keys are errors, so that a typo is not silently ignored.
// Errors name the key, the value and what is wrong; secrets never appear in
// them, nor in WriteYAML's output. docs/config.md documents every key.
package config
