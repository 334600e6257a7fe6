package api

import (
	"slices"
	"testing"
)

// A token's aud names a configured public URL plus the path, with or
// without the default port.
func TestAudiences(t *testing.T) {
	got := audiences([]string{"https://ca.example", "https://ca.example:443/", "https://[::1]:443", "https://n1.example:8443"}, "/v1/sign")
	want := []string{
		"https://ca.example/v1/sign", "https://ca.example:443/v1/sign",
		"https://[::1]:443/v1/sign", "https://[::1]/v1/sign",
		"https://n1.example:8443/v1/sign",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audiences\n got %v\nwant %v", got, want)
	}
	if got := audiences(nil, "/v1/sign"); len(got) != 0 {
		t.Errorf("no public URL: %v", got)
	}
}
