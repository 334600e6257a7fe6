package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Zero-touch enrollment: an x5c provisioner trusts manufacturers' CAs, and
// a device that proves, in the TLS handshake, the key of a factory
// certificate (IEEE 802.1AR IDevID) under one of them gets its operational
// certificate, named after the device ID the factory certificate's
// subject carries.
// The FSM lets each device enroll once (or again, with reprovision), and
// only when listed where the provisioner has an allow-list.

// Limits of an x5c provisioner's document.
const (
	maxX5CRoots     = 16
	maxX5CRootsPEM  = 48 << 10 // within an admin request's 64 KiB
	maxX5CNames     = 16
	maxX5CChain     = 8
	maxDevicesBatch = 10000
	// MaxDeviceList bounds one page of a device listing.
	MaxDeviceList = 1000
)

var (
	oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// ErrFactoryCert refuses a factory certificate the provisioner does not
// trust, or one that names no usable device ID.
var ErrFactoryCert = ErrForbidden.With("the factory certificate is not trusted by this provisioner")

// X5CRequest asks for a device's certificate: the CSR, and the
// certificates of the TLS handshake, leaf first, whose key the handshake
// proved.
type X5CRequest struct {
	Provisioner string
	CSR         []byte
	Chain       []*x509.Certificate
	TTL         time.Duration

	retried bool // once, after the provisioner changed under it
}

// checkX5C validates an x5c provisioner's options.
func (ca *CA) checkX5C(p *fsm.Provisioner) error {
	o := p.X5C
	if o == nil {
		return fmt.Errorf("%w: x5c: an x5c provisioner needs x5c.roots and x5c.names", ErrInvalidRequest)
	}
	if len(p.JWK) != 0 || p.ACME != nil {
		return fmt.Errorf("%w: an x5c provisioner has no jwk and no acme", ErrInvalidRequest)
	}
	roots, err := parseX5CRoots(o.Roots)
	if err != nil {
		return fmt.Errorf("%w: x5c.roots: %v", ErrInvalidRequest, err)
	}
	if err := ca.notOurAnchor(roots); err != nil {
		return err
	}
	switch o.DeviceID {
	case "", "serial", "cn":
	default:
		return fmt.Errorf("%w: x5c.device_id: %q: want serial or cn", ErrInvalidRequest, truncate(o.DeviceID))
	}
	if len(o.Names) == 0 || len(o.Names) > maxX5CNames {
		return fmt.Errorf("%w: x5c.names: 1-%d name templates", ErrInvalidRequest, maxX5CNames)
	}
	attr := o.DeviceID
	if attr == "" {
		attr = "serial"
	}
	seen := map[string]bool{}
	for _, t := range o.Names {
		if err := x5cTemplate(t, attr); err != nil {
			return fmt.Errorf("%w: x5c.names: %q: %v", ErrInvalidRequest, truncate(t), err)
		}
		if seen[strings.ToLower(t)] {
			return fmt.Errorf("%w: x5c.names: %q twice", ErrInvalidRequest, truncate(t))
		}
		seen[strings.ToLower(t)] = true
		n, err := expandName(t, "sn0123")
		if err == nil {
			_, err = collectNames("", []string{n}, nil, nil, nil)
		}
		if err != nil {
			return fmt.Errorf("%w: x5c.names: %q: %v", ErrInvalidRequest, truncate(t), err)
		}
	}
	return nil
}

func parseX5CRoots(s string) ([]*x509.Certificate, error) {
	if len(s) > maxX5CRootsPEM {
		return nil, fmt.Errorf("larger than %d bytes", maxX5CRootsPEM)
	}
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %s block; want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("%s is not a CA certificate", c.Subject)
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(out) > maxX5CRoots || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("want 1-%d PEM CA certificates and nothing else", maxX5CRoots)
	}
	return out, nil
}

// notOurAnchor refuses a manufacturer root that is one of this cluster's
// authorities (a root or an issuer, by key): the certificates it issues
// would become factory identities, and issued identities must not vouch
// for new ones.
func (ca *CA) notOurAnchor(roots []*x509.Certificate) error {
	auths, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	for _, a := range auths {
		ders := a.Roots()
		for _, iss := range a.Issuers {
			ders = append(ders, iss.Chain...)
		}
		for _, der := range ders {
			ours, err := ca.certs.parse(der)
			if err != nil {
				continue
			}
			for _, r := range roots {
				if SamePublicKey(r.PublicKey, ours.PublicKey) {
					return fmt.Errorf("%w: x5c.roots: %s is a CA of authority %s; a manufacturer root must be the manufacturer's", ErrInvalidRequest, r.Subject, a.Name)
				}
			}
		}
	}
	return nil
}

// x5cTemplate checks a name template: one placeholder, the device ID
// ({id}, or its attribute's own), as a whole part of the name: the first
// DNS label ("{id}.devices.example", or "{id}" alone), an email's local
// part ("{id}@devices.example") or a URI's last path segment
// ("spiffe://devices.example/{id}"). IDs hold no '.', '@' or '/', so the
// names of two devices, or of two templates, never meet.
func x5cTemplate(t, attr string) error {
	if strings.Count(t, "{") != 1 || strings.Count(t, "}") != 1 {
		return errors.New("want one placeholder, the device ID ({id})")
	}
	i, j := strings.IndexByte(t, '{'), strings.IndexByte(t, '}')
	if j < i {
		return errors.New("a stray }")
	}
	if p := t[i : j+1]; p != "{id}" && p != "{"+attr+"}" {
		return fmt.Errorf("the placeholder must be the device ID: {id} or {%s}", attr)
	}
	if strings.Contains(t, "*") {
		return errors.New("a device's names are its own, never a wildcard")
	}
	rest := t[j+1:]
	switch {
	case i == 0 && strings.HasPrefix(rest, ".") && deviceDomain(rest[1:]):
	case i == 0 && strings.HasPrefix(rest, "@") && deviceDomain(rest[1:]):
	case rest == "" && i > 0 && t[i-1] == '/':
		return uriTemplate(t[:i])
	default:
		return errors.New("the device ID must be the first label of a DNS name under a domain, an email's local part, or a URI's last path segment")
	}
	return nil
}

// deviceDomain: a DNS name whose last label starts with a letter, as
// top-level domains do, so a numeric ID under it is no address to any
// resolver (inet_aton reads "2130706433.1" and "1.0x7f").
func deviceDomain(d string) bool {
	if !validDNSName(d) {
		return false
	}
	labels := strings.Split(strings.ToLower(d), ".")
	last := labels[len(labels)-1]
	return last != "" && last[0] >= 'a' && last[0] <= 'z'
}

// uriTemplate checks what comes before the ID in a URI template: a scheme,
// a host that is a device domain, no user, port, query or fragment, and
// a path of segments of unreserved characters (RFC 3986: letters,
// digits, '-', '.', '_', '~'; never "." or ".."), so that the ID is the
// last segment and nothing a URI's normalization could merge with another
// device's.
func uriTemplate(prefix string) error {
	u, err := url.Parse(prefix)
	bad := err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" ||
		u.Fragment != "" || !strings.HasPrefix(prefix, u.Scheme+"://"+u.Host+"/") || !deviceDomain(u.Host)
	if !bad {
		path := strings.TrimPrefix(prefix, u.Scheme+"://"+u.Host+"/")
		for _, seg := range strings.Split(strings.TrimSuffix(path, "/"), "/") {
			if path == "" {
				break
			}
			if seg == "" || seg == "." || seg == ".." || strings.ContainsFunc(seg, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r))
			}) {
				bad = true
			}
		}
	}
	if bad {
		return errors.New("a URI template is scheme://host/path/{id}: a DNS host, no user, port, query or fragment, path segments of letters, digits, '-', '.', '_' and '~'")
	}
	return nil
}

// deviceID is the ID the factory certificate names.
func deviceID(o *fsm.X5COptions, leaf *x509.Certificate) string {
	if o.DeviceID == "cn" {
		return leaf.Subject.CommonName
	}
	return leaf.Subject.SerialNumber
}

// expandName puts the device ID into a template's placeholder ({id},
// {serial} or {cn}: x5cTemplate lets only the device ID's in). The ID is
// held to device-ID characters, so it cannot add a label, a path or a
// wildcard.
func expandName(t, id string) (string, error) {
	if !fsm.DeviceIDValid(id) {
		return "", fmt.Errorf("the device ID %.80q is empty or has characters other than letters, digits, '-', '_' and ':'", id)
	}
	i, j := strings.IndexByte(t, '{'), strings.IndexByte(t, '}')
	if i < 0 || j < i {
		return "", errors.New("no placeholder")
	}
	switch t[i+1 : j] {
	case "id", "serial", "cn":
	default:
		return "", fmt.Errorf("unknown placeholder {%.20s}: want {id}, {serial} or {cn}", t[i+1:j])
	}
	out := t[:i] + id + t[j+1:]
	if strings.ContainsAny(out, "{}") {
		return "", errors.New("more than one placeholder")
	}
	return out, nil
}

// verifyFactory verifies the handshake's chain against the provisioner's
// roots and returns the device ID and the names the device may have.
func (ca *CA) verifyFactory(p *fsm.Provisioner, chain []*x509.Certificate) (string, []string, error) {
	if len(chain) == 0 {
		return "", nil, ErrRenewalUnauthenticated.With("enrollment with provisioner " + p.Name + " needs the device's factory certificate in the TLS handshake")
	}
	if len(chain) > maxX5CChain {
		return "", nil, refuse(ErrFactoryCert, "more than %d certificates in the handshake", maxX5CChain)
	}
	roots, err := parseX5CRoots(p.X5C.Roots)
	if err != nil {
		return "", nil, fmt.Errorf("%w: provisioner %s: x5c.roots: %v", ErrUnavailable, p.Name, err)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	// Client authentication, or no EKU at all (802.1AR IDevIDs often
	// have none).
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: ca.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", nil, refuse(ErrFactoryCert, "provisioner %s: %v", p.Name, err)
	}
	if leaf.IsCA {
		return "", nil, refuse(ErrFactoryCert, "a CA certificate is no device's")
	}
	if rec, err := ca.state.Cert(SerialHex(leaf.SerialNumber)); err == nil && bytes.Equal(rec.DER, leaf.Raw) {
		// Checked when the roots were written too; an authority made
		// since could chain to them.
		return "", nil, refuse(ErrFactoryCert, "a certificate this cluster issued is no factory certificate")
	}
	for _, oid := range []asn1.ObjectIdentifier{oidSerialNumber, oidCommonName} {
		n := 0
		for _, a := range leaf.Subject.Names {
			if a.Type.Equal(oid) {
				n++
			}
		}
		if n > 1 {
			// Parsers disagree on which one counts.
			return "", nil, refuse(ErrFactoryCert, "the factory certificate's subject has %d attributes %v", n, oid)
		}
	}
	id := strings.ToLower(deviceID(p.X5C, leaf)) // as the registry keeps it
	if !fsm.DeviceIDValid(id) {
		return "", nil, refuse(ErrFactoryCert, "the factory certificate's device ID (%.80q) is empty or not 1-%d letters, digits, '-', '_' and ':'", id, fsm.MaxDeviceIDLen)
	}
	names := make([]string, 0, len(p.X5C.Names))
	for _, t := range p.X5C.Names {
		n, err := expandName(t, id)
		if err != nil {
			return "", nil, refuse(ErrFactoryCert, "name template %q: %v", t, err)
		}
		c, err := normalizeName(n)
		if err != nil {
			return "", nil, refuse(ErrFactoryCert, "name template %q: %v", t, err)
		}
		if net.ParseIP(c) != nil {
			// Device values may hold ':' and hex digits (MAC addresses):
			// they name a device, never an address.
			return "", nil, refuse(ErrFactoryCert, "name template %q makes an IP address, %s", t, c)
		}
		names = append(names, c)
	}
	return id, names, nil
}

// SignX5C issues a device's operational certificate against its factory
// certificate. A CSR without names asks for all the provisioner's names;
// one with names may ask for some of them. A device whose answer was lost
// asks again with the same key and gets the same certificate.
func (ca *CA) SignX5C(ctx context.Context, req X5CRequest) (*Issued, error) {
	p, err := ca.provisioner(ctx, req.Provisioner, fsm.KindX5C)
	if err != nil {
		return nil, err
	}
	if p.X5C == nil {
		return nil, refuse(ErrProvisionerKind, "provisioner %s has no x5c options", p.Name)
	}
	id, allowed, err := ca.verifyFactory(p, req.Chain)
	if err != nil {
		return nil, err
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	var names *certNames
	if csr.Subject.CommonName == "" && len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) == 0 {
		cn := ""
		if !strings.ContainsAny(allowed[0], ":@") {
			cn = allowed[0]
		}
		names, err = collectNames(cn, allowed, nil, nil, nil)
	} else {
		names, err = csrNames(csr)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range append([]string{names.cn}, names.all...) {
		if n != "" && !slices.Contains(allowed, n) {
			return nil, refuse(fsm.ErrNameNotAllowed, "%.80s is not one of device %s's names %v", n, id, allowed)
		}
	}
	ctx = asActor(ctx, "provisioner:"+p.Name+" device:"+id)
	iss, err := ca.issue(ctx, issuance{
		prov: p, pub: csr.PublicKey, names: names, ttl: req.TTL,
		requester: "x5c:" + p.Name + ":" + id, auth: fsm.Issue{Device: id, ProvisionerVersion: p.Version, ProvisionerCreated: p.CreatedAt},
	})
	if errors.Is(err, fsm.ErrVersionMismatch) && !req.retried {
		// The provisioner changed while this was signed: verify again
		// against what is committed now.
		req.retried = true
		if err := ca.raft.Barrier(ctx); err != nil {
			return nil, err
		}
		return ca.SignX5C(ctx, req)
	}
	if errors.Is(err, fsm.ErrDeviceEnrolled) {
		return ca.replayDevice(ctx, p.Name, id, csr.PublicKey, err)
	}
	return iss, err
}

// replayDevice answers a device that enrolled already with the certificate
// it enrolled for, when it asks for that certificate's key (the CSR's
// signature proved it) and the certificate stands: a lost answer does not
// lock a device out, and nobody else gains anything.
func (ca *CA) replayDevice(ctx context.Context, prov, id string, pub crypto.PublicKey, usedErr error) (*Issued, error) {
	d, err := ca.state.Device(prov, id)
	if err != nil || d.Serial == "" {
		if ca.raft.Barrier(ctx) != nil {
			return nil, usedErr
		}
		if d, err = ca.state.Device(prov, id); err != nil || d.Serial == "" {
			return nil, usedErr
		}
	}
	if d.Revoked() {
		return nil, usedErr
	}
	if iss := ca.standingFor(d.Serial, pub); iss != nil {
		return iss, nil
	}
	return nil, usedErr
}

// PutDevices lists devices on an x5c provisioner's allow-list, all or
// none: a request is refused whole when an ID is not valid (checked here)
// or was revoked (by its entry, which lists nothing then).
func (ca *CA) PutDevices(ctx context.Context, prov string, ids []string) (int, error) {
	if _, err := ca.provisioner(ctx, prov, fsm.KindX5C); err != nil {
		return 0, err
	}
	if len(ids) == 0 || len(ids) > maxDevicesBatch {
		return 0, fmt.Errorf("%w: ids: 1-%d device IDs per request", ErrInvalidRequest, maxDevicesBatch)
	}
	seen := make(map[string]bool, len(ids))
	var uniq []string
	for _, id := range ids {
		if !fsm.DeviceIDValid(id) {
			return 0, fmt.Errorf("%w: ids: %.80q is not 1-%d letters, digits, '-', '_' and ':'", ErrInvalidRequest, id, fsm.MaxDeviceIDLen)
		}
		if k := strings.ToLower(id); !seen[k] {
			seen[k] = true
			uniq = append(uniq, id)
		}
	}
	// One entry, all or nothing: at most 10,000 IDs of 64 bytes, well
	// within what an entry may hold.
	if err := ca.propose(ctx, fsm.CmdDevicesPut, fsm.DevicesPut{Provisioner: prov, IDs: uniq}); err != nil {
		return 0, err
	}
	return len(uniq), nil
}

// RevokeDevice revokes a device's entry (listed or not, seen or not).
func (ca *CA) RevokeDevice(ctx context.Context, prov, id string) (*fsm.Device, error) {
	if _, err := ca.provisioner(ctx, prov, fsm.KindX5C); err != nil {
		return nil, err
	}
	if !fsm.DeviceIDValid(id) {
		return nil, fmt.Errorf("%w: %.80q is not a device ID", ErrInvalidRequest, id)
	}
	if err := ca.proposeAndPropagate(ctx, fsm.CmdDeviceRevoke, fsm.DeviceRevoke{Provisioner: prov, ID: id}); err != nil {
		return nil, err
	}
	return ca.state.Device(prov, id)
}

// Device returns one device of an x5c provisioner.
func (ca *CA) Device(ctx context.Context, prov, id string) (*fsm.Device, error) {
	if _, err := ca.provisioner(ctx, prov, fsm.KindX5C); err != nil {
		return nil, err
	}
	d, err := lookup(ctx, ca, func() (*fsm.Device, error) { return ca.state.Device(prov, id) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fsm.ErrDeviceUnknown.With(fmt.Sprintf("provisioner %s has no device %.80q", prov, id))
	}
	return d, err
}

// Devices lists an x5c provisioner's devices (after catching up with the
// leader): IDs starting with prefix, after the cursor, up to limit.
func (ca *CA) Devices(ctx context.Context, prov, prefix, after string, limit int) ([]*fsm.Device, error) {
	if _, err := ca.provisioner(ctx, prov, fsm.KindX5C); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxDeviceList {
		limit = MaxDeviceList
	}
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	return ca.state.Devices(prov, prefix, after, limit)
}
