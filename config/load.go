package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of environment overrides: FEDRELAY_LOG_LEVEL
// overrides log.level, FEDRELAY_LIMITS_IDLE_TIMEOUT limits.idle_timeout.
const EnvPrefix = "FEDRELAY"

// keyDelim separates key path elements inside viper. It is not "." because
// domain names are map keys (dns.overrides) and contain dots.
const keyDelim = "::"

//go:embed default.yaml
var defaultYAML []byte

// Error is a configuration problem: the key, the offending value and what is
// wrong with it. Its message reads
// `config: domains[1].route: "10.0.0.5:99999": port out of range`.
type Error struct {
	Key    string // dotted path, list items as [i]
	Value  string // the offending value as given, "" when not applicable
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("config: %s: %q: %s", e.Key, e.Value, e.Reason)
}

// Errors is every problem found in one configuration, in key order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Options says where Load takes the configuration from, in increasing
// precedence: the embedded defaults, the file at Path, the environment
// (FEDRELAY_<SECTION>_<KEY>), then the flags in Flags that were set.
type Options struct {
	// Path is the configuration file; its extension picks the format
	// (.yaml/.yml, .toml, .json; anything else is read as YAML). Empty
	// means defaults and environment only.
	Path string
	// Flags maps configuration keys in dotted form ("log.level") to
	// command-line flags; a flag overrides the key only when it was set.
	Flags map[string]*pflag.Flag
	// Getenv looks up environment variables; nil means os.LookupEnv.
	// Tests set it to isolate themselves from the process environment.
	Getenv func(string) (string, bool)

	// partial skips the checks that only a runnable relay needs (at least
	// one domain); Defaults uses it.
	partial bool
}

// Defaults returns the embedded defaults overridden by the environment, for
// commands that need only some sections (fedrelay resolve without --config).
func Defaults() (*Config, error) {
	return Load(Options{partial: true})
}

// Load reads, merges, decodes and validates the configuration. On failure the
// error is an Errors value naming every bad key.
func Load(opts Options) (*Config, error) {
	v := viper.NewWithOptions(
		viper.KeyDelimiter(keyDelim),
		viper.EnvKeyReplacer(strings.NewReplacer(keyDelim, "_")),
	)
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		return nil, fmt.Errorf("config: embedded defaults: %w", err) // a build bug
	}
	if opts.Path != "" {
		data, err := os.ReadFile(opts.Path)
		if err != nil {
			return nil, Errors{{Key: "--config", Value: opts.Path, Reason: readReason(err)}}
		}
		v.SetConfigType(formatOf(opts.Path))
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, Errors{{Key: "--config", Value: opts.Path, Reason: "cannot parse: " + oneLine(err)}}
		}
	}
	// Unknown keys are checked on the file alone: the environment can only
	// name known keys, flags are declared by the program.
	if errs := unknownKeys(v.AllSettings(), reflect.TypeOf(Config{}), ""); len(errs) > 0 {
		return nil, errs
	}
	if err := applyEnv(v, opts.Getenv); err != nil {
		return nil, err
	}
	for key, f := range opts.Flags {
		if f == nil || !f.Changed {
			continue
		}
		v.Set(strings.ReplaceAll(key, ".", keyDelim), flagValue(f))
	}

	var cfg Config
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = decodeHook()
		dc.WeaklyTypedInput = true
		dc.ZeroFields = true
	})
	if err != nil {
		return nil, decodeErrors(err)
	}
	cfg.Source = opts.Path
	if errs := cfg.validate(!opts.partial); len(errs) > 0 {
		return nil, errs
	}
	return &cfg, nil
}

// applyEnv overrides every known scalar or list key from the environment.
// Viper's own AutomaticEnv only consults keys on Get, not on Unmarshal, so
// the lookup is done here for each key the schema knows.
func applyEnv(v *viper.Viper, getenv func(string) (string, bool)) error {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	for _, key := range envKeys(reflect.TypeOf(Config{}), "") {
		name := EnvName(key)
		if val, ok := getenv(name); ok {
			v.Set(strings.ReplaceAll(key, ".", keyDelim), val)
		}
	}
	return nil
}

// EnvName is the environment variable that overrides key ("log.level" →
// FEDRELAY_LOG_LEVEL).
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKeys lists the dotted keys the environment may override: every field of
// the top-level sections that is not a list of structs or a map.
func envKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		switch {
		case f.Type.Kind() == reflect.Struct:
			keys = append(keys, envKeys(f.Type, key)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct,
			f.Type.Kind() == reflect.Map:
			// domains, policy.rules, dns.overrides: files only.
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// unknownKeys reports every key in settings that t does not declare.
func unknownKeys(settings map[string]any, t reflect.Type, prefix string) Errors {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag != "" && tag != "-" {
			fields[tag] = t.Field(i).Type
		}
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs Errors
	for _, k := range names {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		ft, ok := fields[k]
		if !ok {
			errs = append(errs, &Error{Key: key, Reason: "unknown key" + suggest(k, fields)})
			continue
		}
		switch val := settings[k].(type) {
		case map[string]any:
			if ft.Kind() == reflect.Struct {
				errs = append(errs, unknownKeys(val, ft, key)...)
			}
		case []any:
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				for i, item := range val {
					if m, ok := item.(map[string]any); ok {
						errs = append(errs, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d]", key, i))...)
					}
				}
			}
		}
	}
	return errs
}

// suggest names the known key closest to a typo, if one is close.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for f := range fields {
		if d := editDistance(k, f); d < bestD || (d == bestD && best != "" && f < best) {
			best, bestD = f, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeErrors turns mapstructure's joined errors into Errors naming keys.
func decodeErrors(err error) Errors {
	var errs Errors
	var walk func(error)
	walk = func(e error) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			inner := de.Unwrap()
			var deeper *mapstructure.DecodeError
			if errors.As(inner, &deeper) {
				walk(inner)
				return
			}
			errs = append(errs, decodeError(de.Name(), inner))
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		errs = append(errs, &Error{Key: "?", Reason: e.Error()})
	}
	walk(err)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	return errs
}

func decodeError(name string, err error) *Error {
	var ve *valueError
	if errors.As(err, &ve) {
		return &Error{Key: name, Value: ve.value, Reason: ve.reason}
	}
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) {
		return &Error{Key: name, Value: fmt.Sprint(pe.Value), Reason: "not a " + typeWord(pe.Expected.Type())}
	}
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ue) {
		return &Error{Key: name, Value: fmt.Sprint(ue.Value), Reason: "not a " + typeWord(ue.Expected.Type())}
	}
	return &Error{Key: name, Reason: err.Error()}
}

func typeWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Slice:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	}
	return t.String()
}

func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		return "toml"
	case ".json":
		return "json"
	}
	return "yaml"
}

func readReason(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	return oneLine(err)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// flagValue gives a flag's value in the form the decoder takes: lists as
// []string, everything else as its string form.
func flagValue(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return f.Value.String()
}
