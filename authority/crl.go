package authority

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// CRLs live in the replicated state: whichever node signs one proposes it
// with the next number, and the FSM refuses a number that is not above the
// current one. Every node serves the same bytes, and none serves a CRL past
// its nextUpdate. A revocation marks its issuer's CRL stale (in the same
// entry); the leader alone re-signs stale CRLs, each at most once per CRL
// interval (RefreshStaleCRLs), so a burst of revocations costs one
// signature per interval, not one each.

// Defaults of an authority's CRL settings (fsm.CRLSettings): a CRL is
// valid a day and signed anew every hour, revocations or not. A revocation
// reaches it sooner: within the leader's CRL interval.
const (
	DefaultCRLValidity = 24 * time.Hour
	DefaultCRLRefresh  = time.Hour
)

// CRLTimes are an authority's CRL validity and refresh period.
func CRLTimes(a *fsm.Authority) (validity, refresh time.Duration) {
	validity, refresh = DefaultCRLValidity, DefaultCRLRefresh
	if a.CRL.Validity > 0 {
		validity = a.CRL.Validity
	}
	if a.CRL.Refresh > 0 {
		refresh = a.CRL.Refresh
	}
	return validity, min(refresh, validity/2)
}

// ErrCRLUnavailable: no current CRL (none yet, or the last one lapsed).
var ErrCRLUnavailable = errors.New("no current CRL")

// DefaultMaxCRLEntries is the most certificates one CRL lists: a CRL is
// one Raft entry (fsm.MaxCommandBytes, base64 in JSON), and at about 50
// bytes an entry 100,000 make some 5 MB. An issuer with more revoked has
// its CRL partitioned (crl { shards }).
const DefaultMaxCRLEntries = 100_000

// ErrCRLTooLarge: more revoked certificates than one CRL lists.
var ErrCRLTooLarge = errors.New("CRL too large")

// RefreshCRL signs a new CRL for an issuer of an authority if forced, if
// there is none, or if the current one is past half its validity. id is
// the issuer's ID, or one of its shards' (fsm.CRLShardID).
func (ca *CA) RefreshCRL(ctx context.Context, name, id string, force bool) error {
	ca.crlMu.Lock()
	defer ca.crlMu.Unlock()
	for attempt := 0; ; attempt++ {
		err := ca.refreshCRL(ctx, name, id, force)
		if !errors.Is(err, fsm.ErrConflict) || attempt == 2 {
			return err
		}
		// Another node numbered its CRL first: read the new state and retry.
		if err := ca.raft.Barrier(ctx); err != nil {
			return err
		}
	}
}

func (ca *CA) refreshCRL(ctx context.Context, name, id string, force bool) error {
	issuerID, shard := fsm.SplitCRLID(id)
	a, iss, err := ca.issuer(name, issuerID)
	if err != nil {
		return err
	}
	if shard >= iss.CRLShards || (shard < 0 && issuerID != id) {
		return fmt.Errorf("%w: issuer %s has no CRL %q", ErrNotFound, iss.ID, truncate(id))
	}
	now := ca.now().UTC().Truncate(time.Second)
	issuer, err := ca.certs.parse(iss.Chain[0])
	if err != nil || !now.Before(issuer.NotAfter) {
		return err // an expired issuer has nothing left to vouch for
	}
	// Read before the revoked list: the CRL lists at least everything
	// applied up to asOf, which clears the stale marks up to it.
	asOf := ca.state.AppliedIndex()
	number, due := ca.crlDue(a, id, force, now)
	if !due {
		return nil
	}
	if ca.state.RevokedMore(name, id, now, ca.maxCRLEntries) {
		what := "partition the authority's CRLs (crl { shards }) and rotate the issuer"
		if iss.CRLShards > 1 {
			what = fmt.Sprintf("its %d shards list what it issued since its CRL was partitioned; partition new issuers into more shards", iss.CRLShards)
		}
		return fmt.Errorf("%w: CRL %s/%s would list more than the %d certificates one CRL holds: %s", ErrCRLTooLarge, name, id, ca.maxCRLEntries, what)
	}
	revoked, err := ca.state.Revoked(name, id, now)
	if err != nil {
		return err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return fmt.Errorf("crl: bad serial %q in state", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	var ext []pkix.Extension
	if shard >= 0 {
		ext = append(ext, issuingDistributionPoint(CRLShardURL(iss.CRLBaseURL, name, iss.ID, shard)))
	}
	return ca.signCRL(ctx, fsm.CmdCRLPut, a, id, number, asOf, issuer, iss.KeyURI, entries, ext, now)
}

// crlIDs are the IDs of an issuer's CRLs: its complete one, then each
// shard's if it has them.
func crlIDs(iss *fsm.Issuer) []string {
	ids := []string{iss.ID}
	for k := range iss.CRLShards {
		ids = append(ids, fsm.CRLShardID(iss.ID, k))
	}
	return ids
}

// oidIssuingDistributionPoint is RFC 5280's id-ce-issuingDistributionPoint.
var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// issuingDistributionPoint is the extension that scopes a CRL shard (RFC
// 5280, 5.2.5): the shard's URL, as the certificates it covers name it in
// their CRL distribution point, and end-entity certificates only. A
// relying party that holds every shard (OpenSSL: nginx, HAProxy) checks a
// certificate against the one whose URL it names; a shard without the
// extension would pass for a complete CRL. Critical, as RFC 5280 says.
func issuingDistributionPoint(url string) pkix.Extension {
	ctx := func(tag int, compound bool, b []byte) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: compound, Bytes: b}
	}
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			panic(err) // raw values of our own making always encode
		}
		return b
	}
	uri := mustMarshal(ctx(6, false, []byte(url))) // GeneralName uniformResourceIdentifier
	fullName := mustMarshal(ctx(0, true, uri))     // DistributionPointName fullName
	value := mustMarshal(struct{ DP, UserCerts asn1.RawValue }{
		DP:        ctx(0, true, fullName),      // distributionPoint
		UserCerts: ctx(1, false, []byte{0xff}), // onlyContainsUserCerts TRUE
	})
	return pkix.Extension{Id: oidIssuingDistributionPoint, Critical: true, Value: value}
}

// crlDue says whether the next CRL of id (an issuer, or a root's
// RootCRLID) is due, and the number it takes: forced, none yet, past the
// authority's refresh period, or dated by a longer validity than it has now.
func (ca *CA) crlDue(a *fsm.Authority, id string, force bool, now time.Time) (uint64, bool) {
	cur, err := ca.state.CRL(a.Name, id)
	if err != nil {
		return 1, true
	}
	validity, refresh := CRLTimes(a)
	if !force && now.Before(cur.ThisUpdate.Add(refresh)) && cur.NextUpdate.Sub(cur.ThisUpdate) <= validity {
		return 0, false
	}
	return cur.Number + 1, true
}

// signCRL signs CRL number of id with the key at keyURI (issuer's) and
// proposes it as cmd, dated now for the authority's validity.
func (ca *CA) signCRL(ctx context.Context, cmd fsm.CmdType, a *fsm.Authority, id string, number, asOf uint64,
	issuer *x509.Certificate, keyURI string, entries []x509.RevocationListEntry, ext []pkix.Extension, now time.Time) error {
	validity, _ := CRLTimes(a)
	tmpl := &x509.RevocationList{Number: new(big.Int).SetUint64(number), ThisUpdate: now, NextUpdate: now.Add(validity),
		RevokedCertificateEntries: entries, ExtraExtensions: ext}
	key, err := ca.signers.Get(ctx, keyURI)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, signer.CryptoSigner(ctx, key))
	if err != nil {
		return fmt.Errorf("crl: sign: %w", err)
	}
	return ca.propose(ctx, cmd, fsm.CRLPut{CRL: fsm.CRL{Authority: a.Name, Issuer: id, Number: number,
		ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate, DER: der}, AsOf: asOf})
}

// RefreshStaleCRLs signs a new CRL for every issuer whose CRL lacks a
// committed revocation. The leader calls it once per CRL interval: that is
// the one place revocations reach the CRL (with format-2 revocations), so
// CRL numbers come from one sequence and a burst of revocations costs one
// signature per issuer per interval. A failure leaves the mark for the next
// interval.
func (ca *CA) RefreshStaleCRLs(ctx context.Context) error {
	stale, err := ca.state.StaleCRLs()
	if err != nil {
		return err
	}
	// A CRL that does not exist yet (a root whose key just came, an
	// issuer's shards just made) is as stale as one that lacks a
	// revocation.
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	for _, a := range as {
		var ids []string
		if a.RootKeyURI != "" {
			ids = append(ids, RootCRLID(mustParse(a.Root)))
		}
		for _, iss := range a.Issuers {
			ids = append(ids, crlIDs(&iss)...)
		}
		for _, id := range ids {
			if !ca.state.HasCRL(a.Name, id) {
				stale = append(stale, fsm.IssuerRef{Authority: a.Name, Issuer: id})
			}
		}
	}
	var errs []error
	for _, s := range stale {
		refresh := ca.RefreshCRL
		if strings.HasPrefix(s.Issuer, fsm.RootCRLPrefix) {
			refresh = ca.refreshRootCRL
		}
		if err := refresh(ctx, s.Authority, s.Issuer, true); err != nil {
			errs = append(errs, fmt.Errorf("CRL of %s/%s: %w", s.Authority, s.Issuer, err))
		}
	}
	return errors.Join(errs...)
}

// RefreshCRLs keeps every authority's CRL current; the leader calls it
// periodically.
func (ca *CA) RefreshCRLs(ctx context.Context) error {
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range as {
		for _, iss := range a.Issuers {
			for _, id := range crlIDs(&iss) {
				errs = append(errs, ca.RefreshCRL(ctx, a.Name, id, false))
			}
		}
		if a.RootKeyURI != "" {
			errs = append(errs, ca.refreshRootCRL(ctx, a.Name, RootCRLID(mustParse(a.Root)), false))
		}
	}
	return errors.Join(errs...)
}

// CRL returns an issuer's current CRL, never one past its nextUpdate:
// shard -1 is its complete CRL, another one of its shards. Issuer "" is
// the authority's newest active issuer.
func (ca *CA) CRL(ctx context.Context, name, issuer string, shard int) (*fsm.CRL, error) {
	// Never a CRL older than the newest committed when the request came.
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	_, iss, err := ca.issuer(name, issuer)
	if err != nil {
		return nil, err
	}
	id := iss.ID
	if shard >= 0 {
		if shard >= iss.CRLShards {
			return nil, fmt.Errorf("%w: issuer %s of %s has %d CRL shards", ErrNotFound, iss.ID, name, iss.CRLShards)
		}
		id = fsm.CRLShardID(iss.ID, shard)
	}
	c, err := ca.state.CRL(name, id)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && !ca.now().Before(c.NextUpdate)) {
		hint := "it is regenerated shortly"
		if shard < 0 && iss.CRLShards > 1 {
			hint = fmt.Sprintf("the certificates it issued since its CRL was partitioned name one of its %d shards (.../crl/0 to .../crl/%d)", iss.CRLShards, iss.CRLShards-1)
		}
		return nil, fmt.Errorf("%w: %w for %s/%s; %s", ErrUnavailable, ErrCRLUnavailable, name, id, hint)
	}
	return c, err
}
