// Package freeport hands out loopback addresses for servers that must be
// named before they start (gossip seeds, HTTP URLs written into config).
//
// Asking the kernel for port 0 and closing the listener is racy: the port
// comes from the ephemeral range, and any outgoing connection or ":0"
// listener in another process may take it before our server binds it.
// Ports below the ephemeral range are never handed out by the kernel, so
// the only competition is other callers of this package, which pick at
// random. Within one process no address is handed out twice: a test names
// several addresses before it binds any of them, and two picks of one port
// would both look free.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the bottom of the range we pick from; below it live the
// well-known and commonly configured ports.
const lowest = 20000

var (
	mu     sync.Mutex
	handed = map[string]bool{} // every address Addr returned in this process
)

// For is Addr for tests: a failure fails the test.
func For(tb testing.TB) string {
	tb.Helper()
	addr, err := Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// Range is where Addr picks ports: [lo, hi), below the kernel's ephemeral
// range. hi-lo may be small on a machine whose ephemeral range starts low.
func Range() (lo, hi int) { return lowest, ephemeralStart() }

// Addr returns a 127.0.0.1 address whose port is free for both TCP and UDP
// (memberlist binds both) and outside the kernel's ephemeral range.
func Addr() (string, error) {
	top := ephemeralStart()
	if top-lowest < 1000 {
		return kernelPick()
	}
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lowest+rand.IntN(top-lowest)))
		if !handed[addr] && free(addr) {
			handed[addr] = true
			return addr, nil
		}
	}
	return "", fmt.Errorf("freeport: no free port in %d-%d after 100 tries", lowest, top-1)
}

func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralStart is the first port the kernel hands out for port 0 (32768
// when it cannot be read, the Linux default).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// kernelPick is the fallback when the ephemeral range leaves no room below it.
func kernelPick() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
