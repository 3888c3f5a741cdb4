package config

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// WriteYAML writes the effective configuration as YAML, keys in the order of
// the reference, secrets redacted. It is what `fedrelay check-config` prints.
func (c *Config) WriteYAML(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(node(reflect.ValueOf(*c))); err != nil {
		return err
	}
	return enc.Close()
}

func scalar(s string, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s}
}

// node renders a value of the Config tree; field names come from the
// mapstructure tags so the output reads back as a configuration file.
func node(v reflect.Value) *yaml.Node {
	switch x := v.Interface().(type) {
	case Secret:
		return scalar(x.String(), "!!str")
	case time.Duration:
		return scalar(x.String(), "!!str")
	case slog.Level:
		return scalar(map[slog.Level]string{slog.LevelDebug: "debug", slog.LevelInfo: "info",
			slog.LevelWarn: "warn", slog.LevelError: "error"}[x], "!!str")
	case uint16: // tls.min_version
		return scalar(TLSVersionName(x), "!!str")
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := 0; i < v.NumField(); i++ {
			tag := v.Type().Field(i).Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			n.Content = append(n.Content, scalar(tag, "!!str"), node(v.Field(i)))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Type().Elem().Kind() != reflect.Struct {
			n.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			n.Content = append(n.Content, node(v.Index(i)))
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.Content = append(n.Content, scalar(k, "!!str"), node(v.MapIndex(reflect.ValueOf(k))))
		}
		return n
	case reflect.String:
		return scalar(v.String(), "!!str")
	case reflect.Bool:
		return scalar(strconv.FormatBool(v.Bool()), "!!bool")
	case reflect.Int, reflect.Int64:
		return scalar(strconv.FormatInt(v.Int(), 10), "!!int")
	case reflect.Float64:
		return scalar(strconv.FormatFloat(v.Float(), 'g', -1, 64), "!!float")
	}
	return scalar(fmt.Sprint(v.Interface()), "!!str")
}
