package api

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// The hand-assembled answer to sign and renew is byte for byte what the
// JSON encoder writes for apitypes.Signed, with and without a chain, and when
// the chain's part comes from the cache.
func TestIssuedAnswerIsTheEncodersJSON(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 123000000, time.UTC)
	cert := fsm.Cert{Serial: "0a1b", DER: []byte("leaf <der> & \x00"), NotBefore: at, NotAfter: at.Add(time.Hour)}
	renewed := cert
	renewed.RenewedFrom = "09ff"
	s := &Server{}
	for name, iss := range map[string]*authority.Issued{
		"chain of two":  {Cert: cert, Chain: [][]byte{[]byte("intermediate"), []byte("cross")}},
		"chain of one":  {Cert: renewed, Chain: [][]byte{[]byte("intermediate")}},
		"empty chain":   {Cert: cert, Chain: [][]byte{}},
		"no chain":      {Cert: cert},
		"another chain": {Cert: cert, Chain: [][]byte{[]byte("intermediate2")}},
	} {
		want := httptest.NewRecorder()
		writeJSON(want, 201, apitypes.Signed{
			Serial: iss.Cert.Serial, Certificate: string(authority.EncodePEM(iss.Cert.DER)), Chain: pemList(iss.Chain),
			NotBefore: iss.Cert.NotBefore, NotAfter: iss.Cert.NotAfter, RenewedFrom: iss.Cert.RenewedFrom,
		})
		for range 2 { // the second answer takes the chain from the cache
			got := httptest.NewRecorder()
			s.writeIssued(got, iss)
			if got.Code != 201 || got.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%s: status %d, type %q", name, got.Code, got.Header().Get("Content-Type"))
			}
			if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Fatalf("%s: wrote\n%s\nthe encoder writes\n%s", name, got.Body.Bytes(), want.Body.Bytes())
			}
		}
	}
}
