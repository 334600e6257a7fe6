package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/quorumca/quorumca/fsm"
)

// Server certificates: each node's own API certificate, from a provisioner
// of kind server. Only a node asks, in its own process (IssueServerCert):
// no token is ever minted for such a provisioner, no JWT names it, and the
// holder of a server certificate cannot renew it through /v1/renew, so a
// leaked API key dies with its certificate. A node is already trusted with
// every key (SECURITY.md), so what binds the certificate to the node is the
// record: requester node:<id>, committed through Raft like any other.
//
// The provisioner's names are reserved: no other provisioner of any
// authority issues a name that one of its patterns covers, nor a wildcard
// that covers one, so no device or service certificate can answer for the
// CA's own API.

// serverRequester prefixes a server certificate's requester: node:<id>.
const serverRequester = "node:"

// ServerRequester is the requester of node's server certificates.
func ServerRequester(node string) string { return serverRequester + node }

// ErrServerCertRenewal: server certificates are renewed by their node.
var ErrServerCertRenewal = fmt.Errorf("%w: a server certificate is renewed by its node, not through /v1/renew", ErrForbidden)

// CheckServerPolicy keeps a server provisioner to names a node can show:
// exact DNS names or one label under a domain ("*.compute.internal"), IP
// prefixes, server authentication only.
func CheckServerPolicy(p *fsm.Policy) error {
	for i, d := range p.DNS {
		if d == "*" || strings.HasPrefix(d, ".") {
			return fmt.Errorf("%w: policy.dns[%d]: %q: a server provisioner takes names or \"*.domain\" (the names are reserved for the servers)", ErrInvalidRequest, i, truncate(d))
		}
		if strings.HasPrefix(d, "*.") && !strings.Contains(d[2:], ".") {
			return fmt.Errorf("%w: policy.dns[%d]: %q: \"*.domain\" needs a domain of two labels or more", ErrInvalidRequest, i, truncate(d))
		}
	}
	for i, c := range p.IP {
		// The prefixes are reserved from every device: a server's subnet,
		// not an address space.
		if pfx, err := netip.ParsePrefix(c); err == nil && pfx.Bits() < map[bool]int{true: 8, false: 32}[pfx.Addr().Is4()] {
			return fmt.Errorf("%w: policy.ip[%d]: %q: a server provisioner reserves at most a /8 (IPv6: a /32)", ErrInvalidRequest, i, truncate(c))
		}
	}
	if len(p.KeyTypes) > 0 && !slices.Contains(p.KeyTypes, "P-256") {
		return fmt.Errorf("%w: policy.key_types: servers make P-256 keys; allow P-256", ErrInvalidRequest)
	}
	switch {
	case len(p.DNS) == 0 && len(p.IP) == 0:
		return fmt.Errorf("%w: policy: a server provisioner needs dns or ip names", ErrInvalidRequest)
	case len(p.URI) > 0 || len(p.Email) > 0 || len(p.CommonName) > 0:
		return fmt.Errorf("%w: policy: a server provisioner allows dns and ip names only", ErrInvalidRequest)
	case p.EKU != "server":
		return fmt.Errorf("%w: policy.eku: a server provisioner issues for server authentication only (eku = \"server\")", ErrInvalidRequest)
	case p.AllowWildcard:
		return fmt.Errorf("%w: policy.allow_wildcard: server certificates name each server", ErrInvalidRequest)
	case p.RenewGrace != 0 || p.RevokeOnRenew:
		return fmt.Errorf("%w: policy: server certificates are not renewed by their holder (renew_grace, revoke_on_renew)", ErrInvalidRequest)
	}
	return nil
}

// ServerNames are the names a node's API certificate carries: the
// policy's exact DNS names, then each of hosts (the node's advertised
// address, its public URLs) that the policy allows, in order, once.
func ServerNames(p *fsm.Policy, hosts []string) []string {
	var out []string
	for _, d := range p.DNS {
		if !isWildcard(d) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, h := range hosts {
		c, err := normalizeName(h)
		if err != nil || slices.Contains(out, c) {
			continue
		}
		one := &certNames{}
		if one.add(c) == nil && len(one.uris)+len(one.emails) == 0 && checkNames(p, one) == nil {
			out = append(out, c)
		}
	}
	return out
}

// IssueServerCert issues node's API certificate for pub from the server
// provisioner prov, for names (ServerNames). It is called by the node
// itself, never on behalf of a request.
func (ca *CA) IssueServerCert(ctx context.Context, prov, node string, pub crypto.PublicKey, names []string) (*Issued, error) {
	p, err := ca.provisioner(ctx, prov, fsm.KindServer)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, refuse(fsm.ErrNameNotAllowed, "provisioner %s allows none of this server's names", prov)
	}
	cn := &certNames{}
	for _, n := range names {
		if err := cn.add(n); err != nil {
			return nil, err
		}
	}
	cn.cn = cn.all[0]
	// One use, remembered until the certificate expires: the entry needs
	// an authorization, and a retried proposal is still the same one.
	var nonce [16]byte
	rand.Read(nonce[:])
	key := sha256.Sum256(append([]byte("server-cert\x00"+node+"\x00"), nonce[:]...))
	ctx = asActor(ctx, "node:"+node)
	return ca.issue(ctx, issuance{
		prov: p, pub: pub, names: cn, requester: serverRequester + node,
		auth: fsm.Issue{OneTime: &fsm.OneTime{Key: key[:], Expires: ca.now().Add(maxTTL(&p.Policy) + backdate)}},
	})
}

// checkReserved refuses, for any provisioner but a server one, a name that
// a server provisioner's patterns cover, or a wildcard that covers one of
// them: a certificate that could answer for a server's API.
func (ca *CA) checkReserved(prov *fsm.Provisioner, n *certNames) error {
	if prov.Kind == fsm.KindServer {
		return nil
	}
	servers, err := ca.state.ServerProvisioners()
	if err != nil || len(servers) == 0 {
		return err
	}
	dns := n.dns
	if n.cn != "" && net.ParseIP(n.cn) == nil && !slices.Contains(dns, n.cn) {
		dns = append(slices.Clip(dns), n.cn) // clients that still read the CN as a host name
	}
	for _, s := range servers {
		for _, d := range dns {
			if slices.ContainsFunc(s.Policy.DNS, func(pat string) bool { return coversDNS(pat, d) }) {
				return refuse(fsm.ErrNameNotAllowed, "name %s is reserved for the servers' own certificates (provisioner %s)", d, s.Name)
			}
		}
		for _, ip := range n.ips {
			if slices.ContainsFunc(s.Policy.IP, func(c string) bool { return matchIP(c, ip) }) {
				return refuse(fsm.ErrNameNotAllowed, "IP address %s is reserved for the servers' own certificates (provisioner %s)", ip, s.Name)
			}
		}
	}
	return nil
}

// coversDNS: a certificate for name d could answer for a name that the
// server pattern pat allows (pat: a name or "*.domain").
func coversDNS(pat, d string) bool {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if matchDNS(pat, d) {
		return true
	}
	// A wildcard name covers the pattern's names: "*.d" covers "a.d" and
	// the pattern "*.d" itself.
	return isWildcard(d) && matchDNS(d, pat)
}

// refuseServerRenewal is Renew's rule for server certificates: by the
// provisioner's kind, and by the record's requester, which no change of
// the provisioner (deleted, made again under another kind) can alter.
func refuseServerRenewal(prov *fsm.Provisioner, rec *fsm.Cert) error {
	if prov.Kind == fsm.KindServer || strings.HasPrefix(rec.Requester, serverRequester) {
		return ErrServerCertRenewal
	}
	return nil
}

// checkKindChange refuses to turn a provisioner into a server provisioner
// or back: certificates keep their provisioner's name, and its kind decides
// who may renew them and whose names are reserved.
func (ca *CA) checkKindChange(ctx context.Context, p *fsm.Provisioner) error {
	if err := ca.raft.Barrier(ctx); err != nil { // the kind as committed, not as this node last heard
		return err
	}
	cur, err := ca.state.Provisioner(p.Name)
	if err != nil || cur.Kind == p.Kind || (cur.Kind != fsm.KindServer && p.Kind != fsm.KindServer) {
		return nil
	}
	return fmt.Errorf("%w: kind: provisioner %s is a %s provisioner; a server provisioner's kind never changes (make another)", ErrInvalidRequest, p.Name, cur.Kind)
}
