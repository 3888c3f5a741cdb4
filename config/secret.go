package config

import (
	"encoding/json"
	"log/slog"
)

// Secret is a value that must never reach a log, an error message or
// check-config output: every way of printing it prints a redaction.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() []byte { return []byte(s) }

// String implements fmt.Stringer with a redaction.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer with a redaction.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes a redaction.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML writes a redaction.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText writes a redaction (TOML and other text encoders).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
