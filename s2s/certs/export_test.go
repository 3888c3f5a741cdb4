package certs

// ParseSAN exposes parseSAN to the external tests and the fuzz target.
func ParseSAN(ext []byte) (dns, srv, xmpp []string, err error) {
	n, err := parseSAN(ext)
	return n.DNS, n.SRV, n.XMPP, err
}

// MarshalSAN exposes marshalSAN to the external tests.
func MarshalSAN(dns, srv, xmpp []string) ([]byte, error) {
	return marshalSAN(sanNames{DNS: dns, SRV: srv, XMPP: xmpp})
}
