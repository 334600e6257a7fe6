package keyrate

import (
	"net"
	"net/netip"
)

// Source is the key a client address is limited by: its IP ("host" or
// "host:port" alike), with an IPv4-mapped address as IPv4, and an IPv6
// address by its /64, which one host commonly holds whole. Anything else
// is returned as given.
func Source(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
