package api

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/quorumca/quorumca/api/apitypes"
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
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status > 499 || re.code == "" {
				t.Fatalf("body %q: error %v is not a 4xx request error", body, err)
			}
		}
	})
}
