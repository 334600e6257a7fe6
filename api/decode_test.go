package api

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/internal/errs"
)

// FuzzDecodeRequest: any body decodes or is refused with a 4xx request error.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"csr": "x", "token": "y"}`))
	f.Add([]byte(`{"sans": ["a"], "ttl": "1h", "properties": {"k": "v"}}`))
	f.Add([]byte(`{"csr": 1}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`{"unknown": true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&apitypes.SignRequest{}, &apitypes.TokenRequest{}} {
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			err := decode(httptest.NewRecorder(), r, 1024, v)
			if err == nil {
				continue
			}
			e := errs.Of(err)
			if e == nil || statusOf[e.Kind] < 400 || statusOf[e.Kind] > 499 || e.Code == "" {
				t.Fatalf("body %q: error %v is not a 4xx request error", body, err)
			}
		}
	})
}
