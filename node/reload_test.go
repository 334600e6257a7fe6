package node

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A reload names what it cannot apply, as the file spells it, and only that.
func TestNeedsRestartNamesWhatAReloadCannotApply(t *testing.T) {
	parse := func(src string) *fileConfig {
		t.Helper()
		c, err := Parse("node.hcl", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return c.file
	}
	cluster := `cluster {
  join = ["https://a:1"]
  join_secret = "0123456789abcdef"
  ca_key = "awskms:alias/c"
}
`
	before := parse(baseConfig + cluster + `audit { file = "a.jsonl" }` + "\n")
	after := parse(strings.NewReplacer(`"127.0.0.1:8300"`, `"127.0.0.1:9300"`, `tls_cert_file = "c"`, `tls_cert_file = "c2"`).Replace(baseConfig) +
		strings.Replace(cluster, "https://a:1", "https://b:1", 1) + `audit { file = "b.jsonl" }
log_level = "debug"
ocsp { rate = 5 }
provisioner "p" {
  kind = "enrollment-token"
}
`)
	got := needsRestart("", reflect.ValueOf(*before), reflect.ValueOf(*after))
	if want := []string{"raft.listen", "cluster.join", "ocsp"}; !slices.Equal(got, want) {
		t.Errorf("needs restart: %v, want %v", got, want)
	}
	if got := needsRestart("", reflect.ValueOf(*before), reflect.ValueOf(*before)); len(got) != 0 {
		t.Errorf("the same file: %v", got)
	}
	if _, err := Parse("node.hcl", []byte(baseConfig+cluster+`log_level = "loud"`)); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Errorf("a bad log_level: %v", err)
	}
}
