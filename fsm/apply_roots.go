package fsm

import "time"

func init() {
	register(CmdAuthorityUpdate, "authority_update", 1, applyAuthorityUpdate)
	needsFormat(CmdAuthorityUpdate, 1, 3)
	register(CmdIssuerRevoke, "issuer_revoke", 1, applyIssuerRevoke)
	needsFormat(CmdIssuerRevoke, 1, 3)
	register(CmdRootCRLPut, "root_crl_put", 1, applyRootCRLPut)
	needsFormat(CmdRootCRLPut, 1, 3)
}

// AuthorityUpdate changes an authority's settings; a nil field stays. The
// proposer checks what only it can (that a root key matches the root).
type AuthorityUpdate struct {
	Name       string       `json:"name"`
	RootKeyURI *string      `json:"root_key_uri,omitempty"`
	BaseURL    *string      `json:"base_url,omitempty"`
	CRL        *CRLSettings `json:"crl,omitempty"`
	// IssuerChain replaces an issuer's chain by one for the same key (an
	// intermediate signed again, with other links or dates).
	IssuerChain *IssuerChain `json:"issuer_chain,omitempty"`
}

// IssuerChain is an issuer's ID and its new chain (DER, root excluded).
type IssuerChain struct {
	ID    string   `json:"id"`
	Chain [][]byte `json:"chain"`
}

func applyAuthorityUpdate(a *applyCtx) error {
	var in AuthorityUpdate
	a.decode(&in)
	a.notef("authority=%s", in.Name)
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Name), &cur); err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+in.Name)
	}
	if in.RootKeyURI != nil {
		cur.RootKeyURI = *in.RootKeyURI
	}
	if in.BaseURL != nil {
		cur.BaseURL = *in.BaseURL
	}
	if in.CRL != nil {
		cur.CRL = *in.CRL
		if err := checkCRLLayout(&cur); err != nil {
			return err
		}
	}
	if ic := in.IssuerChain; ic != nil {
		iss := cur.Issuer(ic.ID)
		if iss == nil || len(ic.Chain) == 0 {
			return reject(ErrAuthorityUnknown, "authority "+in.Name+" has no issuer "+ic.ID)
		}
		iss.Chain = ic.Chain
	}
	pinCRLShards(&cur)
	putJSON(a.tx, bAuthorities, []byte(cur.Name), &cur)
	return nil
}

// IssuerRevoke revokes an issuer's certificate: it issues nothing more,
// and RootCRL (RootCRLPrefix and the root's ID, set by the proposer) is
// marked for the leader to sign anew with it listed.
type IssuerRevoke struct {
	Authority string `json:"authority"`
	Issuer    string `json:"issuer"`
	Reason    int    `json:"reason"`
	RootCRL   string `json:"root_crl,omitempty"`
}

func applyIssuerRevoke(a *applyCtx) error {
	var in IssuerRevoke
	a.decode(&in)
	a.notef("authority=%s issuer=%s reason=%d", in.Authority, in.Issuer, in.Reason)
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Authority), &cur); err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+in.Authority)
	}
	iss := cur.Issuer(in.Issuer)
	if iss == nil {
		return reject(ErrAuthorityUnknown, "authority "+in.Authority+" has no issuer "+in.Issuer)
	}
	if iss.Revoked() {
		return nil // revoked already: the first revocation's time and reason stand
	}
	iss.RevokedAt, iss.RevocationReason, iss.Active = a.now.Truncate(time.Second), in.Reason, false
	putJSON(a.tx, bAuthorities, []byte(cur.Name), &cur)
	if in.RootCRL != "" {
		markStale(a, in.Authority, in.RootCRL)
	}
	return nil
}

func applyRootCRLPut(a *applyCtx) error { return putCRL(a, true) }
