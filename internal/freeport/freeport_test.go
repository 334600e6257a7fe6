package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrIsBindableAndBelowTheEphemeralRange(t *testing.T) {
	top := ephemeralStart()
	seen := map[string]bool{}
	for range 20 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if top-lowest >= 1000 && (port < lowest || port >= top) {
			t.Fatalf("port %d outside %d-%d", port, lowest, top-1)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s was handed out but cannot be bound: %v", addr, err)
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("%s udp: %v", addr, err)
		}
		u.Close()
		l.Close()
		seen[addr] = true
	}
	if len(seen) < 15 {
		t.Fatalf("20 picks gave only %d distinct addresses", len(seen))
	}
}

func TestBusyPortIsNotHandedOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free(l.Addr().String()) {
		t.Fatalf("%s is listening but was reported free", l.Addr())
	}
}

// A test names its addresses before it binds any: picks that are not yet
// bound must never repeat, or two servers get one port.
func TestUnboundPicksNeverRepeat(t *testing.T) {
	if lo, hi := Range(); hi-lo < 1000 {
		t.Skip("ephemeral range starts too low: addresses come from the kernel")
	}
	seen := map[string]bool{}
	for range 3000 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
	}
}
