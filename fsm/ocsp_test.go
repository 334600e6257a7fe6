package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestOCSPResponderPutAndDelete(t *testing.T) {
	f, b := lifecycle(t)
	r := OCSPResponder{Authority: "default", KeyURI: "softkey:/ocsp.pem", TTL: 24 * time.Hour,
		Certs: []OCSPResponderCert{{Issuer: "1", DER: []byte("ocsp-1"), NotAfter: t0.Add(24 * time.Hour)}}}
	put := func(r OCSPResponder, expected uint64) error {
		return apply(t, f, b.entry(CmdOCSPResponderPut, t0, OCSPResponderPut{Responder: r, ExpectedVersion: expected}))
	}

	// Refused before anything is written.
	for name, bad := range map[string]OCSPResponder{
		"unknown authority": {Authority: "nope", KeyURI: r.KeyURI, Certs: r.Certs},
		"no key":            {Authority: "default", Certs: r.Certs},
		"unknown issuer":    {Authority: "default", KeyURI: r.KeyURI, Certs: []OCSPResponderCert{{Issuer: "9", DER: []byte("x")}}},
		"issuer twice":      {Authority: "default", KeyURI: r.KeyURI, Certs: append(r.Certs, r.Certs[0])},
	} {
		if err := put(bad, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := f.OCSPResponder("default"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused put left a record: %v", err)
	}

	entry := b.entry(CmdOCSPResponderPut, t0, OCSPResponderPut{Responder: r})
	if err := apply(t, f, entry); err != nil {
		t.Fatal(err)
	}
	// The same entry again (a retry after an ambiguous failure) is a no-op.
	again := *entry
	again.Index = b.index + 1
	b.index++
	if err := apply(t, f, &again); err != nil {
		t.Fatalf("retried put: %v", err)
	}
	got, err := f.OCSPResponder("default")
	if err != nil || got.Version != 1 || !got.UpdatedAt.Equal(t0) || !bytes.Equal(got.Cert("1").DER, []byte("ocsp-1")) {
		t.Fatalf("after put and retry: %+v, %v", got, err)
	}
	// A renewal that read an older version loses; one that read this one wins.
	r.Certs[0].DER = []byte("ocsp-2")
	if err := put(r, 0); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("put over an existing responder with expected version 0: %v", err)
	}
	if err := put(r, 1); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.OCSPResponder("default"); got.Version != 2 || string(got.Cert("1").DER) != "ocsp-2" {
		t.Fatalf("after renewal: %+v", got)
	}
	// Reads are copies.
	got, _ = f.OCSPResponder("default")
	got.Certs[0].Issuer = "changed"
	if again, _ := f.OCSPResponder("default"); again.Cert("1") == nil {
		t.Fatal("changing a read changed the stored record")
	}

	for range 2 { // deleting twice is harmless
		if err := apply(t, f, b.entry(CmdOCSPResponderDel, t0, OCSPResponderDelete{Authority: "default"})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.OCSPResponder("default"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// Older binaries panic on these commands: they wait for log format 2.
func TestOCSPResponderCommandsNeedFormat2(t *testing.T) {
	for _, typ := range []CmdType{CmdOCSPResponderPut, CmdOCSPResponderDel} {
		env, err := NewEnvelope(typ, "x", OCSPResponderDelete{Authority: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if env.Format() != 2 {
			t.Errorf("%s: format %d, want 2", CommandName(typ), env.Format())
		}
	}
}
