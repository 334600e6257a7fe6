// Package pkcs11 signs with keys in a PKCS#11 token (an HSM; SoftHSM2 in
// tests) through github.com/ThalesGroup/crypto11. It needs cgo: the default
// static build carries a stub that says how to get a build with it.
//
// URI (RFC 7512): pkcs11:token=<label>;object=<key label>[;id=%01%02]
//
//	?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:VAR|file:/path
//
// The token is chosen by label (slot numbers change); the PIN comes from an
// environment variable or a file, never from the URI itself.
package pkcs11

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/quorumca/quorumca/signer"
)

// Scheme is the URI scheme of PKCS#11 keys.
const Scheme = "pkcs11"

type ref struct {
	token, object string
	id            []byte
	module        string
	pinSource     string
}

func parseURI(uri string) (ref, error) {
	rest := strings.TrimPrefix(uri, Scheme+":")
	path, query, _ := strings.Cut(rest, "?")
	var r ref
	for _, attr := range strings.Split(path, ";") {
		if attr == "" {
			continue
		}
		k, v, ok := strings.Cut(attr, "=")
		val, err := url.PathUnescape(v)
		if !ok || err != nil {
			return ref{}, fmt.Errorf("%w: %q: attribute %q", signer.ErrBadURI, uri, attr)
		}
		switch k {
		case "token":
			r.token = val
		case "object":
			r.object = val
		case "id":
			r.id = []byte(val)
		case "pin-value":
			return ref{}, fmt.Errorf("%w: the PIN must come from pin-source=env:VAR or file:PATH, never the URI", signer.ErrBadURI)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return ref{}, fmt.Errorf("%w: %q: %v", signer.ErrBadURI, uri, err)
	}
	if q.Has("pin-value") {
		return ref{}, fmt.Errorf("%w: the PIN must come from pin-source=env:VAR or file:PATH, never the URI", signer.ErrBadURI)
	}
	r.module, r.pinSource = q.Get("module-path"), q.Get("pin-source")
	if r.token == "" || (r.object == "" && r.id == nil) || r.module == "" || r.pinSource == "" {
		return ref{}, fmt.Errorf("%w: %q: need token, object or id, module-path and pin-source", signer.ErrBadURI, uri)
	}
	return r, nil
}

func (r ref) uri() string {
	path := "token=" + url.PathEscape(r.token)
	if r.object != "" {
		path += ";object=" + url.PathEscape(r.object)
	}
	if r.id != nil {
		path += ";id=" + escapeBytes(r.id)
	}
	q := url.Values{"module-path": {r.module}, "pin-source": {r.pinSource}}
	return Scheme + ":" + path + "?" + q.Encode()
}

func escapeBytes(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, "%%%02X", c)
	}
	return s.String()
}

// pin reads the PIN from its source.
func (r ref) pin() (string, error) {
	kind, where, _ := strings.Cut(r.pinSource, ":")
	switch kind {
	case "env":
		if v := os.Getenv(where); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("pkcs11: PIN variable %s is not set", where)
	case "file":
		b, err := os.ReadFile(where)
		if err != nil {
			return "", fmt.Errorf("pkcs11: PIN file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", errors.New("pkcs11: pin-source must be env:VAR or file:PATH")
}
