package config

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// valueError is a decode failure that knows the offending value.
type valueError struct {
	value, reason string
}

func (e *valueError) Error() string { return fmt.Sprintf("%q: %s", e.value, e.reason) }

var (
	durationType = reflect.TypeOf(time.Duration(0))
	levelType    = reflect.TypeOf(slog.Level(0))
	uint16Type   = reflect.TypeOf(uint16(0))
	stringsType  = reflect.TypeOf([]string(nil))
)

// decodeHook converts the textual forms used in files, the environment and
// flags into the typed fields of Config.
func decodeHook() mapstructure.DecodeHookFunc {
	return func(from, to reflect.Type, data any) (any, error) {
		switch to {
		case durationType:
			return toDuration(data)
		case levelType:
			return toLevel(data)
		case uint16Type: // the only uint16 is tls.min_version
			return toTLSVersion(data)
		case stringsType:
			if s, ok := data.(string); ok {
				return splitList(s), nil
			}
		}
		return data, nil
	}
}

func toDuration(data any) (any, error) {
	switch v := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, &valueError{v, "not a duration (write a number with a unit: 500ms, 30s, 15m, 1h)"}
		}
		return d, nil
	case int, int64, float64:
		if fmt.Sprint(v) == "0" {
			return time.Duration(0), nil
		}
		return nil, &valueError{fmt.Sprint(v), "a duration needs a unit (500ms, 30s, 15m, 1h)"}
	}
	return data, nil
}

func toLevel(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, &valueError{fmt.Sprint(data), "not a log level (debug, info, warn, error)"}
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return nil, &valueError{s, "not a log level (debug, info, warn, error)"}
}

func toTLSVersion(data any) (any, error) {
	var s string
	switch v := data.(type) {
	case string:
		s = strings.TrimSpace(v)
	case float64: // YAML reads 1.2 as a number
		s = strconv.FormatFloat(v, 'f', -1, 64)
	default:
		s = fmt.Sprint(v)
	}
	switch s {
	case "1.2":
		return uint16(tls.VersionTLS12), nil
	case "1.3":
		return uint16(tls.VersionTLS13), nil
	}
	return nil, &valueError{s, `not a supported TLS version ("1.2" or "1.3")`}
}

// splitList reads a list given as one string (environment, flags):
// comma-separated, blanks trimmed.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return []string{}
	}
	parts := strings.Split(s, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
