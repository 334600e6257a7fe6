package fsm

import (
	"bytes"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delegated keys: a key of its own, certified by each issuer of an
// authority, for one role. An OCSP responder (RFC 6960 4.2.2.2) signs that
// authority's OCSP answers so that OCSP never spends the issuing keys'
// signing quota; a SCEP RA (RFC 8894 2.1.1) decrypts the envelopes SCEP
// clients encrypt to it and signs the replies. The certificates are made
// by the proposing node; the FSM only stores them.

// The roles of a delegated key.
const (
	RoleOCSP = ""     // a delegated OCSP responder
	RoleSCEP = "scep" // a SCEP registration authority
)

func init() {
	// Version 2 names a role: binaries before it would take a SCEP RA
	// for the OCSP responder.
	register(CmdOCSPResponderPut, "ocsp_responder_put", 2, applyOCSPResponderPut)
	needsFormat(CmdOCSPResponderPut, 1, 2)
	needsFormat(CmdOCSPResponderPut, 2, 7)
	register(CmdOCSPResponderDel, "ocsp_responder_delete", 2, applyOCSPResponderDelete)
	needsFormat(CmdOCSPResponderDel, 1, 2)
	needsFormat(CmdOCSPResponderDel, 2, 7)
}

// delegateBucket is where a role's keys are stored; nil: no such role.
func delegateBucket(role string) []byte {
	switch role {
	case RoleOCSP:
		return bOCSPResponders
	case RoleSCEP:
		return bSCEPRAs
	}
	return nil
}

// OCSPResponder is an authority's delegated key of one role (named so for
// the first role, the OCSP responder).
type OCSPResponder struct {
	Authority string        `json:"authority"`
	KeyURI    string        `json:"key_uri"`
	TTL       time.Duration `json:"ttl"` // lifetime of each certificate; the leader renews them
	// Certs holds one certificate for the responder key per issuer: a
	// response must be signed by a key its certificate's issuer certified.
	Certs     []OCSPResponderCert `json:"certs"`
	Version   uint64              `json:"version"`
	UpdatedAt time.Time           `json:"updated_at"`
}

// OCSPResponderCert is the responder's certificate from one issuer.
type OCSPResponderCert struct {
	Issuer   string    `json:"issuer"` // the issuer's ID
	DER      []byte    `json:"der"`
	NotAfter time.Time `json:"not_after"`
}

// Cert returns the responder's certificate from an issuer, or nil.
func (r *OCSPResponder) Cert(issuer string) *OCSPResponderCert {
	for i := range r.Certs {
		if r.Certs[i].Issuer == issuer {
			return &r.Certs[i]
		}
	}
	return nil
}

// OCSPResponderPut sets (ExpectedVersion 0: creates) or replaces an
// authority's responder: a new key or renewed certificates. The expected
// version keeps a renewal by the leader and an operator's change from
// overwriting each other.
type OCSPResponderPut struct {
	Responder       OCSPResponder `json:"responder"`
	ExpectedVersion uint64        `json:"expected_version"`
	Role            string        `json:"role,omitempty"`
}

func (p OCSPResponderPut) payloadVersion() uint16 { return roleVersion(p.Role) }

// OCSPResponderDelete removes an authority's delegated key of a role: for
// the OCSP responder, its issuing keys sign OCSP answers again.
type OCSPResponderDelete struct {
	Authority string `json:"authority"`
	Role      string `json:"role,omitempty"`
}

func (p OCSPResponderDelete) payloadVersion() uint16 { return roleVersion(p.Role) }

func roleVersion(role string) uint16 {
	if role == RoleOCSP {
		return 1
	}
	return 2
}

func applyOCSPResponderPut(a *applyCtx) error {
	var in OCSPResponderPut
	a.decode(&in)
	r := in.Responder
	a.notef("role=%s authority=%s key=%s certs=%d expected_version=%d", in.Role, r.Authority, r.KeyURI, len(r.Certs), in.ExpectedVersion)
	bucket := delegateBucket(in.Role)
	if bucket == nil {
		return reject(ErrConflict, "no delegated key role "+in.Role)
	}
	au, err := a.authority(r.Authority)
	if err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+r.Authority)
	}
	if r.KeyURI == "" {
		return reject(ErrConflict, "a delegated key needs a key")
	}
	for i, c := range r.Certs {
		if au.Issuer(c.Issuer) == nil || len(c.DER) == 0 {
			return reject(ErrConflict, "authority "+r.Authority+" has no issuer "+c.Issuer)
		}
		if slices.ContainsFunc(r.Certs[:i], func(o OCSPResponderCert) bool { return o.Issuer == c.Issuer }) {
			return reject(ErrConflict, "two responder certificates from issuer "+c.Issuer)
		}
	}
	key := []byte(r.Authority)
	var cur OCSPResponder
	exists := getJSON(a.tx, bucket, key, &cur) == nil
	if exists && cur.Version == in.ExpectedVersion+1 && sameResponder(&cur, &r) {
		return nil // a retried proposal
	}
	if (!exists && in.ExpectedVersion != 0) || (exists && cur.Version != in.ExpectedVersion) {
		return reject(ErrVersionMismatch, "the delegated key of "+r.Authority+" changed meanwhile")
	}
	r.Version = in.ExpectedVersion + 1
	r.UpdatedAt = a.now
	putJSON(a.tx, bucket, key, &r)
	return nil
}

func sameResponder(x, y *OCSPResponder) bool {
	return x.KeyURI == y.KeyURI && x.TTL == y.TTL && slices.EqualFunc(x.Certs, y.Certs, func(p, q OCSPResponderCert) bool {
		return p.Issuer == q.Issuer && p.NotAfter.Equal(q.NotAfter) && bytes.Equal(p.DER, q.DER)
	})
}

func applyOCSPResponderDelete(a *applyCtx) error {
	var in OCSPResponderDelete
	a.decode(&in)
	a.notef("role=%s authority=%s", in.Role, in.Authority)
	bucket := delegateBucket(in.Role)
	if bucket == nil {
		return reject(ErrConflict, "no delegated key role "+in.Role)
	}
	if a.tx.Bucket(bucket).Get([]byte(in.Authority)) != nil {
		del(a.tx, bucket, []byte(in.Authority))
	}
	return nil
}

// OCSPResponder returns an authority's delegated OCSP responder.
func (f *FSM) OCSPResponder(authority string) (*OCSPResponder, error) {
	return f.Delegate(RoleOCSP, authority)
}

// Delegate returns an authority's delegated key of a role. Every OCSP
// answer reads one, so its record is decoded once per distinct bytes.
func (f *FSM) Delegate(role, authority string) (*OCSPResponder, error) {
	bucket := delegateBucket(role)
	if bucket == nil {
		return nil, ErrNotFound
	}
	var r *OCSPResponder
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		r, err = decodedResponders.get(tx, bucket, authority)
		return err
	})
	if err != nil {
		return nil, err
	}
	c := *r // the caller's copy: the cached one stays as decoded
	c.Certs = slices.Clone(r.Certs)
	return &c, nil
}

var (
	bOCSPResponders   = []byte("ocsp_responders") // authority name -> OCSPResponder
	bSCEPRAs          = []byte("scep_ras")        // authority name -> OCSPResponder (role scep)
	decodedResponders decodedCache[OCSPResponder]
)
