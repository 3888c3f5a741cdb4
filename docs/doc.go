// Package docs holds the operator documentation (config.md, operators.md,
// security.md) and no code: its test loads every configuration snippet of
// the documentation, README.md and examples/ the way fedrelay would, and
// checks the other snippets (DNS zones, logrotate, server settings) by
// their fence; see the comment at the top of operators.md.
package docs

// Snippet is one fenced block of a Markdown file.
type Snippet struct {
	File string // the Markdown file, as opened
	Line int    // the line of the opening fence
	Info string // the fence's info string: "yaml", "lua prosody", …
	Text string // the content, the fence's indentation removed
}
