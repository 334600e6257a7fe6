package fsm

import (
	"bytes"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delegated OCSP responders (RFC 6960 4.2.2.2): a key of its own, certified
// by each issuer of an authority, signs that authority's OCSP answers so
// that OCSP never spends the issuing keys' signing quota. The certificates
// are made by the proposing node; the FSM only stores them.

func init() {
	register(CmdOCSPResponderPut, "ocsp_responder_put", 1, applyOCSPResponderPut)
	needsFormat(CmdOCSPResponderPut, 1, 2)
	register(CmdOCSPResponderDel, "ocsp_responder_delete", 1, applyOCSPResponderDelete)
	needsFormat(CmdOCSPResponderDel, 1, 2)
}

// OCSPResponder is an authority's delegated OCSP responder.
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
}

// OCSPResponderDelete removes an authority's responder: its issuing keys
// sign OCSP answers again.
type OCSPResponderDelete struct {
	Authority string `json:"authority"`
}

func applyOCSPResponderPut(a *applyCtx) error {
	var in OCSPResponderPut
	a.decode(&in)
	r := in.Responder
	a.notef("authority=%s key=%s certs=%d expected_version=%d", r.Authority, r.KeyURI, len(r.Certs), in.ExpectedVersion)
	au, err := a.authority(r.Authority)
	if err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+r.Authority)
	}
	if r.KeyURI == "" {
		return reject(ErrConflict, "an OCSP responder needs a key")
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
	exists := getJSON(a.tx, bOCSPResponders, key, &cur) == nil
	if exists && cur.Version == in.ExpectedVersion+1 && sameResponder(&cur, &r) {
		return nil // a retried proposal
	}
	if (!exists && in.ExpectedVersion != 0) || (exists && cur.Version != in.ExpectedVersion) {
		return reject(ErrVersionMismatch, "the OCSP responder of "+r.Authority+" changed meanwhile")
	}
	r.Version = in.ExpectedVersion + 1
	r.UpdatedAt = a.now
	putJSON(a.tx, bOCSPResponders, key, &r)
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
	a.notef("authority=%s", in.Authority)
	if a.tx.Bucket(bOCSPResponders).Get([]byte(in.Authority)) != nil {
		del(a.tx, bOCSPResponders, []byte(in.Authority))
	}
	return nil
}

// OCSPResponder returns an authority's delegated OCSP responder. Every OCSP
// answer reads it, so its record is decoded once per distinct bytes.
func (f *FSM) OCSPResponder(authority string) (*OCSPResponder, error) {
	var r *OCSPResponder
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		r, err = decodedResponders.get(tx, bOCSPResponders, authority)
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
	decodedResponders decodedCache[OCSPResponder]
)
