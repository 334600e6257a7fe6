package node

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
)

// A device whose renewal answer was lost renews again and gets the same
// successor: with its key kept, and with -rotate-key, where it asks again
// with the new key it stored as pending before the first request.
func TestAgentRetryOfALostRenewalGetsTheSameSuccessor(t *testing.T) {
	c, proxy := agentCluster(t, time.Hour)
	ctx := context.Background()
	for _, rotate := range []bool{false, true} {
		name := map[bool]string{false: "lost-keep.example", true: "lost-rotate.example"}[rotate]
		cfg, _ := c.newAgentConfig(proxy.URL(), name)
		cfg.RotateKey = rotate
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Check(ctx); err != nil {
			t.Fatalf("enroll: %v", err)
		}
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		h := &holder{key: pair.PrivateKey.(crypto.Signer), cert: pair.Leaf}
		leaf0Serial := pair.Leaf.SerialNumber.Text(16)

		// The renewal the device sent and never heard back from.
		var body []byte
		if rotate {
			k2 := newKey(t)
			der, _ := x509.MarshalPKCS8PrivateKey(k2)
			if err := os.WriteFile(cfg.KeyFile+".pending", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			body = jsonBody(map[string]string{"csr": string(newCSR(t, k2, name))})
		}
		lost := c.mtls(h, c.nodes[1], "POST", "/v1/renew", body, "")
		if lost.status != http.StatusCreated {
			t.Fatalf("renewal: %d %s", lost.status, lost.body)
		}
		var s signed
		lost.decode(t, &s)

		cfg.RenewNow = true
		a, err = agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Check(ctx); err != nil {
			t.Fatalf("rotate=%v: the agent's renewal: %v", rotate, err)
		}
		leaf, err := checkAgentFiles(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := leaf.SerialNumber.Text(16); got != s.Serial {
			t.Errorf("rotate=%v: the agent holds %s, want the successor %s it had lost", rotate, got, s.Serial)
		}
		c.WaitConverged()
		if n := len(successors(t, c.nodes[1], name, leaf0Serial)); n != 1 {
			t.Errorf("rotate=%v: %d successors", rotate, n)
		}
	}
}
