package api

import "testing"

// One IPv6 host commonly holds a whole /64: it counts as one source.
func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:aaaa::1": "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::9": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not-an-address":       "not-an-address",
		"2001:db8:1:3:aaaa::1": "2001:db8:1:3::/64",
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
