package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
)

// doHost sends a request to tn with the Host header a client chose.
func (c *testCluster) doHost(tn *testNode, host, path string, body any, bearer string) reply {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest("POST", "https://"+tn.node.APIAddr()+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Host = host
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// jwkCluster is a one-node cluster with a jwk provisioner "auto" that
// allows any name; mint signs a one-time token for it.
func jwkCluster(t *testing.T) (c *testCluster, mint func(aud, jti string) string) {
	key := newKey(t)
	c = newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.Public()})
		path := filepath.Join(c.dir, "auto.jwk.json")
		if err := os.WriteFile(path, jwk, 0o600); err != nil {
			t.Fatal(err)
		}
		c.provisioners = []*ProvisionerConfig{
			{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: authority.DefaultPolicy()}},
			{Provisioner: fsm.Provisioner{Name: "auto", Kind: fsm.KindJWK, Authority: "default", Policy: authority.DefaultPolicy()}, JWKFile: path},
		}
	})
	mint = func(aud, jti string) string {
		now := time.Now()
		tok, err := authority.SignJWT(key, "", nil, map[string]any{"iss": "auto", "sub": "h.example", "aud": aud, "jti": jti,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return c, mint
}

// A token minted for another CA that shares the provisioner key (another
// environment) names that CA's URL: setting the Host header to it must not
// make this cluster accept it, for enrollment JWTs and renewal tokens.
func TestTokenAudienceIsNotTheHostHeader(t *testing.T) {
	c, mint := jwkCluster(t)
	n := c.nodes[0]
	const other = "staging-ca.example"
	csr := newCSR(t, newKey(t), "h.example")
	if r := c.doHost(n, other, "/v1/sign", map[string]string{"csr": string(csr), "token": mint("https://"+other+"/v1/sign", "stolen-1")}, ""); r.status != http.StatusUnauthorized || r.errorCode() != "token_invalid" {
		t.Errorf("jwk token for %s with Host %s: %d %s", other, other, r.status, r.body)
	}

	h := c.enrollHolder(n, "renewing.example")
	now := time.Now()
	renew, err := authority.SignJWT(h.key, "", [][]byte{h.cert.Raw}, map[string]any{"aud": "https://" + other + "/v1/renew", "jti": "stolen-2",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.doHost(n, other, "/v1/renew", nil, renew); r.status != http.StatusUnauthorized || r.errorCode() != "token_invalid" {
		t.Errorf("renewal token for %s with Host %s: %d %s", other, other, r.status, r.body)
	}
}

// Audiences come from api.public_urls, and without them from the address
// the node advertises now: a node moved to another address accepts tokens
// for the new one only.
func TestTokenAudienceFromPublicURLs(t *testing.T) {
	c, mint := jwkCluster(t)
	n := c.nodes[0]
	sign := func(tok string) reply {
		return c.do(n, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "h.example")), "token": tok}, "")
	}
	oldURL := "https://" + n.node.APIAddr()
	if r := sign(mint(oldURL+"/v1/sign", "a1")); r.status != http.StatusCreated {
		t.Fatalf("token for the advertised address: %d %s", r.status, r.body)
	}

	c.Stop(n)
	n.cfg.APIListen = freeport.For(t)
	c.Restart(n)
	if r := sign(mint(oldURL+"/v1/sign", "a2")); r.status != http.StatusUnauthorized || r.errorCode() != "token_invalid" {
		t.Errorf("token for the address before the move: %d %s", r.status, r.body)
	}
	if r := sign(mint("https://"+n.node.APIAddr()+"/v1/sign", "a3")); r.status != http.StatusCreated {
		t.Errorf("token for the address after the move: %d %s", r.status, r.body)
	}

	c.Stop(n)
	n.cfg.APIPublicURLs = []string{"https://ca.example/"}
	c.Restart(n)
	for aud, want := range map[string]int{
		"https://ca.example/v1/sign":                 http.StatusCreated,
		"https://ca.example:443/v1/sign":             http.StatusCreated,
		"https://" + n.node.APIAddr() + "/v1/sign":   http.StatusUnauthorized, // the list replaces the default
		"https://ca.example/v1/renew":                http.StatusUnauthorized,
		"https://ca.example.staging.example/v1/sign": http.StatusUnauthorized,
	} {
		if r := sign(mint(aud, "b-"+aud)); r.status != want {
			t.Errorf("aud %s: %d %s, want %d", aud, r.status, r.body, want)
		}
	}
}
