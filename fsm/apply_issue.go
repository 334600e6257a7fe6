package fsm

import "slices"

func init() {
	register(CmdIssue, "issue", 1, applyIssue)
}

// Issue consumes a token and records the certificate signed against it, in
// one entry: a certificate is never handed out without its record, and a
// token is never consumed without a certificate.
type Issue struct {
	TokenHash []byte `json:"token_hash"`
	Cert      Cert   `json:"cert"`
}

func applyIssue(a *applyCtx) error {
	var in Issue
	a.decode(&in)
	c := &in.Cert

	var tok Token
	if err := getJSON(a.tx, bTokens, in.TokenHash, &tok); err != nil {
		return ErrTokenInvalid
	}
	if tok.UsedBy != "" {
		if tok.UsedBy == c.Serial {
			return nil // this very entry, proposed again after a lost leader
		}
		return reject(ErrTokenUsed, "token "+tok.ID+" has already been used")
	}
	if !a.now.Before(tok.ExpiresAt) {
		return reject(ErrTokenExpired, "token "+tok.ID+" has expired")
	}
	for _, n := range c.SANs {
		if !slices.Contains(tok.SANs, n) {
			return reject(ErrNameNotAllowed, "name "+n+" is not allowed by token "+tok.ID)
		}
	}
	if a.tx.Bucket(bAuthorities).Get([]byte(c.Authority)) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+c.Authority)
	}
	if a.tx.Bucket(bCerts).Get([]byte(c.Serial)) != nil {
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}

	c.IssuedAt = a.now
	c.TokenID = tok.ID
	putJSON(a.tx, bCerts, []byte(c.Serial), c)
	put(a.tx, bCertsByExpiry, timeKey(c.NotAfter, []byte(c.Serial)), nil)

	tok.UsedAt = a.now
	tok.UsedBy = c.Serial
	putJSON(a.tx, bTokens, in.TokenHash, &tok)
	return nil
}
