package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// The parsers of what a client sends, before any signature is checked.

func FuzzParseJWS(f *testing.F) {
	f.Add([]byte(`{"protected":"eyJhbGciOiJFUzI1NiIsIm5vbmNlIjoiYSIsInVybCI6Imh0dHBzOi8vYSJ9","payload":"","signature":"AAAA"}`))
	f.Add([]byte(`{"protected":"e30","payload":"e30","signature":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseJWS(b)
		if err == nil && (h == nil || h.URL == "") {
			t.Fatal("a JWS accepted without a protected header naming its url")
		}
		if err != nil && ProblemOf(err).Type == "" {
			t.Fatal("a refusal without an ACME type")
		}
	})
}

// A nonce is accepted only if this node minted it, and once.
func FuzzRedeemNonce(f *testing.F) {
	n := NewNonces("n1", nil)
	f.Add(n.Make())
	f.Add("")
	f.Add("AW4xAAAAAAAAAAEAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		node, raw, ok := parseNonce(s)
		if !ok || node != "n1" {
			return
		}
		if n.redeemLocal(raw) {
			// Only minted nonces verify; a second use never does.
			if n.redeemLocal(raw) {
				t.Fatalf("nonce %q accepted twice", s)
			}
		}
	})
}

func TestNoncesAreSingleUseAndForgeriesFail(t *testing.T) {
	n := NewNonces("n1", nil)
	a := n.Make()
	ctx := context.Background()
	if err := n.Redeem(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := n.Redeem(ctx, a); err == nil {
		t.Fatal("a nonce was accepted twice")
	}
	_, raw, _ := parseNonce(n.Make())
	raw[len(raw)-9]++ // another counter under the same MAC
	if n.redeemLocal(raw) {
		t.Fatal("a forged counter was accepted")
	}
	// A nonce pushed out of the window is refused.
	old := n.Make()
	for range nonceWindow {
		n.Make()
	}
	if err := n.Redeem(ctx, old); err == nil {
		t.Fatal("a nonce older than the window was accepted")
	}
}

func FuzzCertID(f *testing.F) {
	f.Add("aGVsbG8.AQID")
	f.Add(".")
	f.Fuzz(func(t *testing.T, s string) {
		serial, err := SerialOfCertID(s)
		if err == nil && serial == "" {
			t.Fatal("an empty serial accepted")
		}
	})
}

// strictObject counts members as a JSON tokenizer does: an object it
// accepts has exactly the members encoding/json's tokens show, each once.
func FuzzStrictObject(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"c":[1,"}",{"d":2}]},"e":"x\\\"y"}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"\u0061":1}`))
	f.Add([]byte(` { } `))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := strictObject(b, "")
		if err != nil {
			return
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.Token() // {
		seen := map[string]bool{}
		for d.More() {
			tok, err := d.Token()
			if err != nil {
				t.Fatalf("accepted %q, which does not tokenize: %v", b, err)
			}
			name := tok.(string)
			if seen[name] {
				t.Fatalf("accepted %q with %q twice", b, name)
			}
			seen[name] = true
			var v json.RawMessage
			if err := d.Decode(&v); err != nil {
				t.Fatalf("accepted %q: %v", b, err)
			}
		}
		if len(seen) != len(m) {
			t.Fatalf("accepted %q: %d members, tokens show %d", b, len(m), len(seen))
		}
	})
}
