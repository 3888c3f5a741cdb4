package docs

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Snippets returns the fenced blocks (```) of the Markdown file at path,
// fences indented inside list items included.
func Snippets(path string) ([]Snippet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Snippet
	var cur *Snippet
	var indent string
	var body strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if info, ok := strings.CutPrefix(trimmed, "```"); ok {
				cur = &Snippet{File: path, Line: n, Info: strings.Join(strings.Fields(info), " ")}
				indent = line[:len(line)-len(trimmed)]
				body.Reset()
			}
			continue
		}
		if trimmed == "```" {
			cur.Text = body.String()
			out = append(out, *cur)
			cur = nil
			continue
		}
		body.WriteString(strings.TrimPrefix(line, indent) + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: the fence ```%s is never closed", path, cur.Line, cur.Info)
	}
	return out, nil
}

// Find returns the snippets of path whose info string is info.
func Find(path, info string) ([]Snippet, error) {
	all, err := Snippets(path)
	if err != nil {
		return nil, err
	}
	var out []Snippet
	for _, s := range all {
		if s.Info == info {
			out = append(out, s)
		}
	}
	return out, nil
}
