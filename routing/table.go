package routing

import "github.com/fedrelay/fedrelay/config"

// Table is the relay's domain table: the internal domains it fronts and the
// route (host:port of the internal server) of each. Every other domain is a
// remote domain, found through public DNS. A Table is immutable; a reload
// makes a new one.
type Table struct {
	routes map[string]string
}

// NewTable builds the table from the validated domains section.
func NewTable(domains []config.Domain) *Table {
	t := &Table{routes: make(map[string]string, len(domains))}
	for _, d := range domains {
		t.routes[d.Name] = d.Route
	}
	return t
}

// IsInternal reports whether domain (normal form) is an internal domain.
func (t *Table) IsInternal(domain string) bool {
	_, ok := t.routes[domain]
	return ok
}

// Route returns the host:port of the internal server of domain.
func (t *Table) Route(domain string) (string, bool) {
	r, ok := t.routes[domain]
	return r, ok
}
