package prosody

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// tcpListen is the socket state LISTEN in /proc/net/tcp.
const tcpListen = "0A"

// listening reports whether process pid holds a TCP socket listening on
// addr: the socket's inode, found in the process's /proc/<pid>/net/tcp{,6}
// table, is one of its open files.
func listening(pid int, addr netip.AddrPort) (bool, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		if err := listenInodes(fmt.Sprintf("/proc/%d/net/%s", pid, table), addr, inodes); err != nil {
			return false, err
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(fdDir + "/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// listenInodes adds to inodes the inode of every socket of a /proc/net/tcp
// style table that listens on addr.
func listenInodes(path string, addr netip.AddrPort, inodes map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // column titles
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[3] != tcpListen {
			continue
		}
		if a, err := parseProcAddr(fl[1]); err == nil && a == addr {
			inodes[fl[9]] = true
		}
	}
	return sc.Err()
}

// parseProcAddr parses an address as /proc/net/tcp{,6} prints it: the
// address as 32-bit words in hexadecimal, each in host byte order, then ':'
// and the port in hexadecimal. IPv4-mapped addresses are unmapped.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket port %q", s)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
