package api

import (
	"crypto/x509"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

type revokeRequest struct {
	Serial string `json:"serial"`
	Reason string `json:"reason,omitempty"`
}

type revokeResponse struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason"`
	confirmation
}

// confirmation names the nodes that confirmed they applied a revocation
// before the answer, and those not waited for or not confirming in time;
// both are absent when nothing was written (revoked already).
type confirmation struct {
	ConfirmedBy []string `json:"confirmed_by,omitempty"`
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

func confirmationOf(r *authority.Revoked) confirmation {
	return confirmation{ConfirmedBy: r.ConfirmedBy, Unconfirmed: r.Unconfirmed}
}

// revoke revokes a certificate, for an admin (bearer token) or for the
// certificate's own holder (mTLS with it).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rr := authority.RevokeRequest{Serial: req.Serial, Reason: req.Reason, Holder: peerCert(r)}
	ctx := r.Context()
	if tok := bearer(r); tok != "" {
		admin, actx, ok := s.admin(w, r, authority.PermOperate)
		if !ok {
			return
		}
		rr.Admin, ctx = admin, actx
	}
	c, err := s.CA.Revoke(ctx, rr)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revokeResponse{Serial: c.Serial, RevokedAt: c.RevokedAt, Reason: authority.ReasonName(c.RevocationReason),
		confirmation: confirmationOf(c)})
}

// peerCert is the TLS client certificate, if the client sent one. The
// handshake proved possession of its key; whether the CA issued it is for
// the authority to check.
// peerChain is every certificate the client sent, leaf first; the
// handshake proved the leaf's key and checked nothing else.
func peerChain(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}

func peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}
