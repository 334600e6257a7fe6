package node

// Hostile JWS shapes against the hand-written flattened-JWS parser and
// signature checks (acme/jws.go), sent to a real three-node cluster's ACME
// directory: every byte of every request is the test's. What RFC 7515 and
// RFC 8555 do not allow must be refused with an ACME problem document (4xx,
// application/problem+json, never a 500) and create nothing. Most requests
// are newOrder requests signed by the attacker's own account, so a shape
// that is wrongly accepted shows as an order that should not exist.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/acme"
)

// jwsAtkQ is s as a JSON string.
func jwsAtkQ(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jwsAtkParts signs the protected header prot (JSON text, as is) and
// payload with key, and returns the three base64url members.
func jwsAtkParts(key crypto.Signer, prot string, payload []byte) (p, pl, sig string) {
	p, pl = b64([]byte(prot)), b64(payload)
	return p, pl, b64(rawSig(key, []byte(p+"."+pl)))
}

func jwsAtkBody(p, pl, sig string) []byte {
	return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":"` + sig + `"}`)
}

// jwsAtkRefused insists on a 4xx ACME problem that leaks nothing, of one
// of types if any are given.
func jwsAtkRefused(t *testing.T, what string, r reply, types ...string) {
	t.Helper()
	if r.status < 400 || r.status >= 500 {
		t.Errorf("%s: %d, want a 4xx ACME problem: %s", what, r.status, jwsAtkShort(r.body))
		return
	}
	atk2Problem(t, what, r, r.status)
	if len(types) == 0 {
		return
	}
	var p struct{ Type string }
	json.Unmarshal(r.body, &p)
	typ := strings.TrimPrefix(p.Type, acme.ProblemPrefix)
	for _, want := range types {
		if typ == want {
			return
		}
	}
	t.Errorf("%s: problem %q, want one of %v: %s", what, typ, types, truncateBody(r.body))
}

func TestACMEJWSAttack(t *testing.T) {
	e := newACMEEnv(t, 3)
	a := newAttacker(t, e)
	nodes := e.c.nodes
	base := "/acme/acme"
	newOrder := base + "/new-order"
	newAcct := base + "/new-account"
	q := jwsAtkQ

	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(st *testing.T) {
			old := a.t
			a.t = st
			defer func() { a.t = old }()
			f(st)
		})
	}

	acc := a.newAccount("acme", nil)   // the attacker's own account: it signs almost everything
	other := a.newAccount("acme", nil) // someone else's
	orderPayload := []byte(`{"identifiers":[{"type":"dns","value":"jws.acme.test"}]}`)
	nonce := func(tn *testNode) string { return a.nonceAt(a.target(tn), "acme") }
	// hdr is acc's header for path, with a fresh nonce from tn.
	hdr := func(tn *testNode, path string) string {
		return `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(path)) + `}`
	}
	send := func(tn *testNode, path string, body []byte) reply {
		return a.send(a.target(tn), path, body)
	}
	// orders is how many orders an account has, read as the account.
	orders := func(t *testing.T, acct *atkAcct) int {
		t.Helper()
		r := a.post(nodes[0], acct, acct.kid+"/orders", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("orders of %s: %d %s", acct.kid, r.status, r.body)
		}
		var out struct{ Orders []string }
		r.decode(t, &out)
		return len(out.Orders)
	}
	// noNewOrders runs f and checks that acc and other have as many orders
	// after as before.
	noNewOrders := func(t *testing.T, f func()) {
		t.Helper()
		b1, b2 := orders(t, acc), orders(t, other)
		f()
		if a1, a2 := orders(t, acc), orders(t, other); a1 != b1 || a2 != b2 {
			t.Errorf("orders made by refused-looking requests: the attacker's %d -> %d, the other account's %d -> %d", b1, a1, b2, a2)
		}
	}
	// noAccount checks that no node has an account for key.
	noAccount := func(t *testing.T, what string, pub crypto.PublicKey) {
		t.Helper()
		for _, tn := range nodes {
			if acct, err := tn.node.FSM().ACMEAccountByKey("acme", thumbOf(pub)); err == nil {
				t.Errorf("%s: an account was made: %s on %s", what, acct.ID, tn.cfg.NodeName)
			}
		}
	}
	// Sanity: the shape every case below mangles is accepted as is.
	run("baseline/well-formed request is accepted", func(t *testing.T) {
		r := send(nodes[1], a.path(acc.kid), func() []byte {
			p, pl, s := jwsAtkParts(acc.key, hdr(nodes[1], a.path(acc.kid)), nil)
			return jwsAtkBody(p, pl, s)
		}())
		if r.status != http.StatusOK {
			t.Fatalf("a well-formed POST-as-GET: %d %s", r.status, r.body)
		}
	})

	// --------------------------------------------- duplicate JSON members
	run("json/duplicate members", func(t *testing.T) {
		noNewOrders(t, func() {
			bogus := b64([]byte(`{"alg":"none","kid":` + q(other.kid) + `,"nonce":"x","url":"https://evil.example/"}`))
			cases := map[string]func(tn *testNode) []byte{
				"protected twice, a forged header first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"protected":"` + bogus + `","protected":"` + p + `","payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"protected twice, the signed header first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"protected":"` + p + `","protected":"` + bogus + `","payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"payload twice": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"protected":"` + p + `","payload":"` + b64([]byte(`{"identifiers":[{"type":"dns","value":"evil.example"}]}`)) + `","payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"signature twice": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":"AAAA","signature":"` + s + `"}`)
				},
				"kid twice, another account's first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(other.kid)+`,"kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				},
				"alg twice, none first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"none","alg":"ES256","kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				},
				"alg twice, HS256 first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"HS256","kid":`+q(acc.kid)+`,"alg":"ES256","nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				},
				"url twice, another host's first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"url":"https://evil.example/acme/acme/new-order","nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				},
				"nonce twice, a made-up one first": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"nonce":"made-up","nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)))
			}
		})
		// jwk twice at newAccount: a key that did not sign first.
		signer, decoy := ecKey(t), ecKey(t)
		tn := nodes[2]
		p, pl, s := jwsAtkParts(signer, `{"alg":"ES256","jwk":`+string(pubJWK(decoy))+`,"jwk":`+string(pubJWK(signer))+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newAcct))+`}`,
			[]byte(`{"termsOfServiceAgreed":true}`))
		jwsAtkRefused(t, "jwk twice at newAccount", send(tn, newAcct, jwsAtkBody(p, pl, s)))
		noAccount(t, "jwk twice", signer.Public())
		noAccount(t, "jwk twice", decoy.Public())
	})

	// ------------------------------------ member names that differ in case
	run("json/member names differing only in case", func(t *testing.T) {
		noNewOrders(t, func() {
			withHeader := func(tn *testNode, h string) []byte {
				p, pl, s := jwsAtkParts(acc.key, h, orderPayload)
				return jwsAtkBody(p, pl, s)
			}
			top := func(tn *testNode, prot, payload, sig string) []byte {
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				return []byte(`{"` + prot + `":"` + p + `","` + payload + `":"` + pl + `","` + sig + `":"` + s + `"}`)
			}
			n, u, kid := func(tn *testNode) string { return q(nonce(tn)) }, q(a.url(newOrder)), q(acc.kid)
			cases := map[string]func(tn *testNode) []byte{
				`"Protected"`:                 func(tn *testNode) []byte { return top(tn, "Protected", "payload", "signature") },
				`"PAYLOAD"`:                   func(tn *testNode) []byte { return top(tn, "protected", "PAYLOAD", "signature") },
				`"Signature"`:                 func(tn *testNode) []byte { return top(tn, "protected", "payload", "Signature") },
				`"ſignature" (U+017F long s)`: func(tn *testNode) []byte { return top(tn, "protected", "payload", "\u017fignature") },
				`"KID"`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"ES256","KID":`+kid+`,"nonce":`+n(tn)+`,"url":`+u+`}`)
				},
				`"Kid" with U+212A Kelvin sign`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"ES256","`+"\u212aid"+`":`+kid+`,"nonce":`+n(tn)+`,"url":`+u+`}`)
				},
				`"Alg"`: func(tn *testNode) []byte {
					return withHeader(tn, `{"Alg":"ES256","kid":`+kid+`,"nonce":`+n(tn)+`,"url":`+u+`}`)
				},
				`"URL"`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"ES256","kid":`+kid+`,"nonce":`+n(tn)+`,"URL":`+u+`}`)
				},
				`"Nonce"`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"ES256","kid":`+kid+`,"Nonce":`+n(tn)+`,"url":`+u+`}`)
				},
				`"kid" another's, "KID" own`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"ES256","kid":`+q(other.kid)+`,"KID":`+kid+`,"nonce":`+n(tn)+`,"url":`+u+`}`)
				},
				`"alg" none, "ALG" ES256`: func(tn *testNode) []byte {
					return withHeader(tn, `{"alg":"none","ALG":"ES256","kid":`+kid+`,"nonce":`+n(tn)+`,"url":`+u+`}`)
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)))
			}
		})
		// "Jwk" at newAccount: RFC 7515 names are case-sensitive, so this
		// request carries no key at all.
		k := ecKey(t)
		tn := nodes[0]
		p, pl, s := jwsAtkParts(k, `{"alg":"ES256","Jwk":`+string(pubJWK(k))+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newAcct))+`}`, []byte(`{"termsOfServiceAgreed":true}`))
		jwsAtkRefused(t, `"Jwk" at newAccount`, send(tn, newAcct, jwsAtkBody(p, pl, s)))
		noAccount(t, `"Jwk"`, k.Public())
		// Other case variants that must stay refused: unprotected header,
		// the general serialization, crit.
		for name, mk := range map[string]func(tn *testNode) []byte{
			`"Header"`: func(tn *testNode) []byte {
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				return []byte(`{"protected":"` + p + `","Header":{"kid":` + q(other.kid) + `},"payload":"` + pl + `","signature":"` + s + `"}`)
			},
			`"Signatures"`: func(tn *testNode) []byte {
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				return []byte(`{"payload":"` + pl + `","Signatures":[{"protected":"` + p + `","signature":"` + s + `"}]}`)
			},
			`"CRIT"`: func(tn *testNode) []byte {
				p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`,"CRIT":["b64"],"B64":false}`, orderPayload)
				return jwsAtkBody(p, pl, s)
			},
		} {
			jwsAtkRefused(t, name, send(nodes[1], newOrder, mk(nodes[1])), acme.ProbMalformed)
		}
	})

	// ---------------------------------------------- framing and trailers
	run("json/trailing data and framing", func(t *testing.T) {
		noNewOrders(t, func() {
			valid := func(tn *testNode) []byte {
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				return jwsAtkBody(p, pl, s)
			}
			cases := map[string]func(tn *testNode) []byte{
				"a closing brace after the object":   func(tn *testNode) []byte { return append(valid(tn), '}') },
				"a closing bracket after the object": func(tn *testNode) []byte { return append(valid(tn), ']') },
				"]]] and garbage after the object":   func(tn *testNode) []byte { return append(valid(tn), "]]]<script>alert(1)</script>"...) },
				"} and a second request":             func(tn *testNode) []byte { return append(append(valid(tn), '}'), valid(tn)...) },
				"a word after the object":            func(tn *testNode) []byte { return append(valid(tn), " trailing"...) },
				"a second object":                    func(tn *testNode) []byte { return append(valid(tn), valid(tn)...) },
				"a NUL after the object":             func(tn *testNode) []byte { return append(valid(tn), 0) },
				"in an array":                        func(tn *testNode) []byte { return append(append([]byte("["), valid(tn)...), ']') },
				"a UTF-8 BOM first":                  func(tn *testNode) []byte { return append([]byte("\xef\xbb\xbf"), valid(tn)...) },
				"truncated":                          func(tn *testNode) []byte { v := valid(tn); return v[:len(v)-2] },
				"a string":                           func(tn *testNode) []byte { return []byte(q(string(valid(tn)))) },
				"null":                               func(*testNode) []byte { return []byte("null") },
				"empty object":                       func(*testNode) []byte { return []byte("{}") },
				"empty body":                         func(*testNode) []byte { return []byte{} },
				"compact serialization": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(p + "." + pl + "." + s)
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)), acme.ProbMalformed)
			}
		})
	})

	run("json/missing, null and mistyped members", func(t *testing.T) {
		// POST-as-GET of the account: a shape wrongly accepted answers 200.
		path := a.path(acc.kid)
		noNewOrders(t, func() {
			cases := map[string]func(tn *testNode) []byte{
				"no payload member": func(tn *testNode) []byte {
					p, _, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","signature":"` + s + `"}`)
				},
				"payload null": func(tn *testNode) []byte {
					p, _, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":null,"signature":"` + s + `"}`)
				},
				"protected null": func(tn *testNode) []byte {
					_, pl, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":null,"payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"no protected member, the header unprotected": func(tn *testNode) []byte {
					_, pl, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"header":` + hdr(tn, path) + `,"payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"signature null": func(tn *testNode) []byte {
					p, pl, _ := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":null}`)
				},
				"no signature member": func(tn *testNode) []byte {
					p, pl, _ := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":"` + pl + `"}`)
				},
				"payload a number": func(tn *testNode) []byte {
					p, _, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":0,"signature":"` + s + `"}`)
				},
				"payload an object": func(tn *testNode) []byte {
					p, _, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":{},"signature":"` + s + `"}`)
				},
				"protected an object": func(tn *testNode) []byte {
					_, pl, s := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":` + hdr(tn, path) + `,"payload":"` + pl + `","signature":"` + s + `"}`)
				},
				"signature an array": func(tn *testNode) []byte {
					p, pl, _ := jwsAtkParts(acc.key, hdr(tn, path), nil)
					return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":["AAAA"]}`)
				},
				"protected header an array": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `[`+hdr(tn, path)+`]`, nil)
					return jwsAtkBody(p, pl, s)
				},
				"protected header null": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `null`, nil)
					return jwsAtkBody(p, pl, s)
				},
				"protected header with trailing data": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, path)+`{}`, nil)
					return jwsAtkBody(p, pl, s)
				},
				"alg a number": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":256,"kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(path))+`}`, nil)
					return jwsAtkBody(p, pl, s)
				},
				"kid an object": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":{"id":`+q(acc.kid)+`},"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(path))+`}`, nil)
					return jwsAtkBody(p, pl, s)
				},
				"url an array": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":[`+q(a.url(path))+`]}`, nil)
					return jwsAtkBody(p, pl, s)
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, path, mk(tn)))
			}
		})
	})

	run("json/unknown members, unprotected header, general serialization", func(t *testing.T) {
		noNewOrders(t, func() {
			with := func(extra string) func(tn *testNode) []byte {
				return func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":"` + s + `",` + extra + `}`)
				}
			}
			cases := map[string]func(tn *testNode) []byte{
				"an unknown member":             with(`"x":1`),
				"an unknown member, null":       with(`"extra":null`),
				"header, empty":                 with(`"header":{}`),
				"header, null":                  with(`"header":null`),
				"header with kid":               with(`"header":{"kid":` + q(other.kid) + `}`),
				"header with alg none":          with(`"header":{"alg":"none"}`),
				"signatures next to the others": with(`"signatures":[]`),
				"general serialization": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"payload":"` + pl + `","signatures":[{"protected":"` + p + `","signature":"` + s + `"}]}`)
				},
				"general serialization, two signatures": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return []byte(`{"payload":"` + pl + `","signatures":[{"protected":"` + p + `","signature":"` + s + `"},{"protected":"` + p + `","signature":"` + s + `"}]}`)
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)), acme.ProbMalformed)
			}
		})
	})

	// ----------------------------------------------------------- base64url
	run("base64url/padding, other alphabets, whitespace", func(t *testing.T) {
		noNewOrders(t, func() {
			// signed over the members exactly as sent, so only their
			// encoding is at fault.
			signedAs := func(tn *testNode, prot, payload string) []byte {
				s := b64(rawSig(acc.key, []byte(prot+"."+payload)))
				return jwsAtkBody(prot, payload, s)
			}
			// A payload whose base64url has '-' or '_' and needs padding.
			var odd []byte
			for i := range 24 {
				odd = []byte(`{` + strings.Repeat(" ", i) + `"identifiers":[{"type":"dns","value":"jws.acme.test"}],"x":">>>???"}`)
				if len(b64(odd))%4 != 0 && strings.ContainsAny(b64(odd), "-_") {
					break
				}
			}
			if len(b64(odd))%4 == 0 || !strings.ContainsAny(b64(odd), "-_") {
				t.Fatalf("no payload with both '-' or '_' and padding: %s", b64(odd))
			}
			cases := map[string]func(tn *testNode) []byte{
				"padded payload": func(tn *testNode) []byte {
					pl := b64(odd)
					return signedAs(tn, b64([]byte(hdr(tn, newOrder))), pl+strings.Repeat("=", (4-len(pl)%4)%4))
				},
				"padded protected": func(tn *testNode) []byte {
					p := b64([]byte(hdr(tn, newOrder)))
					p += strings.Repeat("=", (4-len(p)%4)%4)
					if !strings.HasSuffix(p, "=") {
						p += "=="
					}
					return signedAs(tn, p, b64(orderPayload))
				},
				"padded signature": func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
					return jwsAtkBody(p, pl, s+"==")
				},
				"standard alphabet payload": func(tn *testNode) []byte {
					pl := strings.NewReplacer("-", "+", "_", "/").Replace(b64(odd))
					return signedAs(tn, b64([]byte(hdr(tn, newOrder))), pl)
				},
				"standard alphabet signature": func(tn *testNode) []byte {
					for {
						p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
						if strings.ContainsAny(s, "-_") {
							return jwsAtkBody(p, pl, strings.NewReplacer("-", "+", "_", "/").Replace(s))
						}
					}
				},
				"a space in the payload": func(tn *testNode) []byte {
					pl := b64(orderPayload)
					return signedAs(tn, b64([]byte(hdr(tn, newOrder))), pl[:8]+" "+pl[8:])
				},
				"a dot in the payload": func(tn *testNode) []byte {
					pl := b64(orderPayload)
					return signedAs(tn, b64([]byte(hdr(tn, newOrder))), pl[:8]+"."+pl[8:])
				},
				"payload not base64 at all": func(tn *testNode) []byte {
					return signedAs(tn, b64([]byte(hdr(tn, newOrder))), string(orderPayload))
				},
				"protected not base64 at all": func(tn *testNode) []byte {
					p := hdr(tn, newOrder)
					s := b64(rawSig(acc.key, []byte(p+"."+b64(orderPayload))))
					b, _ := json.Marshal(map[string]string{"protected": p, "payload": b64(orderPayload), "signature": s})
					return b
				},
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)), acme.ProbMalformed)
			}
		})
		// Line breaks: Go's base64 decoder skips \r and \n, as go-jose's
		// did. In a signed member they are signed too; in the signature
		// they make one signature into many byte strings, each of which
		// still needs a fresh nonce. Recorded, not refused here.
		tn := nodes[2]
		p, pl, s := jwsAtkParts(acc.key, hdr(tn, a.path(acc.kid)), nil)
		r := send(tn, a.path(acc.kid), jwsAtkBody(p, pl, s[:10]+`\n`+s[10:]))
		t.Logf("a line break in the signature: %d", r.status)
	})

	// ---------------------------------------------------------------- alg
	run("alg/none, MACs, confusion, near misses", func(t *testing.T) {
		noNewOrders(t, func() {
			jwkBytes := pubJWK(acc.key)
			thumb := []byte(acc.thumb)
			cases := map[string]func(tn *testNode) []byte{}
			for _, alg := range []string{"none", "None", "NONE", "", "es256", "ES256 ", " ES256", "ES256\u0000", "ES-256", "ES256K", "PS256", "RS256", "ES384", "ES512", "EdDSA", "Ed25519", "RS1", "dir"} {
				cases["alg "+fmt.Sprintf("%q", alg)] = func(tn *testNode) []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":`+q(alg)+`,"kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				}
			}
			cases["no alg"] = func(tn *testNode) []byte {
				p, pl, s := jwsAtkParts(acc.key, `{"kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(newOrder))+`}`, orderPayload)
				return jwsAtkBody(p, pl, s)
			}
			cases["alg none, no signature"] = func(tn *testNode) []byte {
				p := b64([]byte(`{"alg":"none","kid":` + q(acc.kid) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`))
				return jwsAtkBody(p, b64(orderPayload), "")
			}
			for macName, macKey := range map[string][]byte{"the account's JWK": jwkBytes, "its thumbprint": thumb, "its kid": []byte(acc.kid)} {
				for _, alg := range []string{"HS256", "HS384", "HS512"} {
					cases[alg+" keyed with "+macName] = func(tn *testNode) []byte {
						p := b64([]byte(`{"alg":` + q(alg) + `,"kid":` + q(acc.kid) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`))
						pl := b64(orderPayload)
						m := hmac.New(sha256.New, macKey)
						m.Write([]byte(p + "." + pl))
						return jwsAtkBody(p, pl, b64(m.Sum(nil)))
					}
				}
			}
			i := 0
			for name, mk := range cases {
				tn := nodes[i%3]
				i++
				jwsAtkRefused(t, name, send(tn, newOrder, mk(tn)), acme.ProbBadSignatureAlgorithm, acme.ProbMalformed)
			}
		})
	})

	// ------------------------------------------------- ECDSA signatures
	run("ecdsa/lengths, encodings and out-of-range values", func(t *testing.T) {
		n := acc.key.(*ecdsa.PrivateKey).Curve.Params().N
		fixed := func(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }
		noNewOrders(t, func() {
			mangle := map[string]func(sig []byte, input []byte) []byte{
				"63 bytes":           func(s, _ []byte) []byte { return s[1:] },
				"65 bytes":           func(s, _ []byte) []byte { return append([]byte{0}, s...) },
				"r with a zero byte": func(s, _ []byte) []byte { return append(append([]byte{0}, s[:32]...), s[32:]...) },
				"96 bytes":           func(s, _ []byte) []byte { return append(s, make([]byte, 32)...) },
				"128 bytes":          func(s, _ []byte) []byte { return append(s, s...) },
				"one byte":           func(s, _ []byte) []byte { return s[:1] },
				"DER": func(_, in []byte) []byte {
					h := sha256.Sum256(in)
					der, _ := ecdsa.SignASN1(rand.Reader, acc.key.(*ecdsa.PrivateKey), h[:])
					return der
				},
				"DER cut to 64 bytes": func(_, in []byte) []byte {
					h := sha256.Sum256(in)
					der, _ := ecdsa.SignASN1(rand.Reader, acc.key.(*ecdsa.PrivateKey), h[:])
					return der[:64]
				},
				"r and s zero": func(_, _ []byte) []byte { return make([]byte, 64) },
				"r zero":       func(s, _ []byte) []byte { return append(make([]byte, 32), s[32:]...) },
				"s zero":       func(s, _ []byte) []byte { return append(append([]byte{}, s[:32]...), make([]byte, 32)...) },
				"r = N":        func(s, _ []byte) []byte { return append(fixed(n), s[32:]...) },
				"s = N":        func(s, _ []byte) []byte { return append(append([]byte{}, s[:32]...), fixed(n)...) },
				"r + N": func(s, _ []byte) []byte {
					return append(new(big.Int).Add(new(big.Int).SetBytes(s[:32]), n).Bytes(), s[32:]...)
				},
				"s + N": func(s, _ []byte) []byte {
					return append(append([]byte{}, s[:32]...), new(big.Int).Add(new(big.Int).SetBytes(s[32:]), n).Bytes()...)
				},
				"r and s swapped": func(s, _ []byte) []byte { return append(append([]byte{}, s[32:]...), s[:32]...) },
				"all ones":        func(_, _ []byte) []byte { return bytes.Repeat([]byte{0xff}, 64) },
				"another request's signature": func(_, _ []byte) []byte {
					return rawSig(acc.key, []byte("eyJ9.e30"))
				},
				"another account's key": func(_, in []byte) []byte { return rawSig(other.key, in) },
			}
			i := 0
			for name, f := range mangle {
				tn := nodes[i%3]
				i++
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				sig, _ := b64dec(s)
				jwsAtkRefused(t, name, send(tn, newOrder, jwsAtkBody(p, pl, b64(f(sig, []byte(p+"."+pl))))), acme.ProbMalformed)
			}
		})
	})
	run("ecdsa/high S: a second signature of a used request is still replay", func(t *testing.T) {
		n := acc.key.(*ecdsa.PrivateKey).Curve.Params().N
		path := a.path(acc.kid)
		flip := func(s string) string {
			sig, _ := b64dec(s)
			sv := new(big.Int).SetBytes(sig[32:])
			out := append([]byte{}, sig[:32]...)
			return b64(append(out, new(big.Int).Sub(n, sv).FillBytes(make([]byte, 32))...))
		}
		// A request answered; the same request with (r, N-s), which ECDSA
		// also verifies, on every node: its nonce is spent.
		p, pl, s := jwsAtkParts(acc.key, hdr(nodes[0], path), nil)
		if r := send(nodes[0], path, jwsAtkBody(p, pl, s)); r.status != http.StatusOK {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		for _, tn := range nodes {
			jwsAtkRefused(t, "the flipped signature on "+tn.cfg.NodeName, send(tn, path, jwsAtkBody(p, pl, flip(s))), acme.ProbBadNonce)
		}
		// A fresh request signed with a high S: ECDSA (and RFC 7518) takes
		// either; go-jose did too.
		half := new(big.Int).Rsh(n, 1)
		p, pl, s = jwsAtkParts(acc.key, hdr(nodes[1], path), nil)
		if sig, _ := b64dec(s); new(big.Int).SetBytes(sig[32:]).Cmp(half) <= 0 {
			s = flip(s)
		}
		r := send(nodes[1], path, jwsAtkBody(p, pl, s))
		t.Logf("a fresh request with a high S: %d (either answer is sound; a low-S rule would only be hygiene)", r.status)
		if r.status >= 500 {
			t.Errorf("high S: %d %s", r.status, r.body)
		}
	})

	// ---------------------------------------- RSA and EdDSA account keys
	run("rsa and eddsa/signature shapes", func(t *testing.T) {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		_, ek, _ := ed25519.GenerateKey(rand.Reader)
		rAcc, eAcc := a.newAccount("acme", rk), a.newAccount("acme", ek)
		l := new(big.Int).SetBytes([]byte{0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0xde, 0xf9, 0xde, 0xa2, 0xf7, 0x9c, 0xd6, 0x58, 0x12, 0x63, 0x1a, 0x5c, 0xf5, 0xd3, 0xed})
		type sc struct {
			acct   *atkAcct
			alg    string
			mangle func(sig, input []byte) []byte
		}
		for name, x := range map[string]sc{
			"RS256, 255 bytes":      {rAcc, "RS256", func(s, _ []byte) []byte { return s[1:] }},
			"RS256, a leading zero": {rAcc, "RS256", func(s, _ []byte) []byte { return append([]byte{0}, s...) }},
			"RS256, all zero":       {rAcc, "RS256", func(s, _ []byte) []byte { return make([]byte, len(s)) }},
			"RS256, the modulus":    {rAcc, "RS256", func(_, _ []byte) []byte { return rk.N.Bytes() }},
			"RS256 with a PSS signature": {rAcc, "RS256", func(_, in []byte) []byte {
				h := sha256.Sum256(in)
				s, _ := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, h[:], nil)
				return s
			}},
			"PS256 with a PSS signature": {rAcc, "PS256", func(_, in []byte) []byte {
				h := sha256.Sum256(in)
				s, _ := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, h[:], nil)
				return s
			}},
			"RS256, SHA-1 inside": {rAcc, "RS256", func(_, in []byte) []byte {
				h := sha256.Sum256(in)
				s, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA1, h[:20])
				return s
			}},
			"EdDSA, 63 bytes": {eAcc, "EdDSA", func(s, _ []byte) []byte { return s[:63] }},
			"EdDSA, 65 bytes": {eAcc, "EdDSA", func(s, _ []byte) []byte { return append(s, 0) }},
			"EdDSA, all zero": {eAcc, "EdDSA", func(s, _ []byte) []byte { return make([]byte, 64) }},
			"EdDSA, S + L": {eAcc, "EdDSA", func(s, _ []byte) []byte {
				// S is little-endian; S+L stays under 2^256 and is not canonical.
				le := make([]byte, 32)
				for i := range 32 {
					le[i] = s[63-i]
				}
				sum := new(big.Int).Add(new(big.Int).SetBytes(le), l).FillBytes(make([]byte, 32))
				out := append([]byte{}, s[:32]...)
				for i := range 32 {
					out = append(out, sum[31-i])
				}
				return out
			}},
			"EdDSA, ES256 alg":    {eAcc, "ES256", func(s, _ []byte) []byte { return s }},
			"Ed25519ph-style alg": {eAcc, "Ed25519", func(s, _ []byte) []byte { return s }},
		} {
			tn := nodes[len(name)%3]
			path := a.path(x.acct.kid)
			prot := `{"alg":` + q(x.alg) + `,"kid":` + q(x.acct.kid) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(path)) + `}`
			p, pl := b64([]byte(prot)), b64([]byte(`{"status":"deactivated"}`))
			sig := rawSig(x.acct.key, []byte(p+"."+pl))
			jwsAtkRefused(t, name, send(tn, path, jwsAtkBody(p, pl, b64(x.mangle(sig, []byte(p+"."+pl))))))
		}
		// Both accounts are still valid: no deactivation went through.
		for _, x := range []*atkAcct{rAcc, eAcc} {
			r := a.post(nodes[0], x, x.kid, nil, nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), `"valid"`) {
				t.Errorf("account %s: %d %s", x.kid, r.status, r.body)
			}
		}
	})

	// ------------------------------------------------------------ keys
	run("jwk/keys that are not acceptable account keys", func(t *testing.T) {
		rk1024, _ := rsa.GenerateKey(rand.Reader, 1024)
		rk, _ := rsa.GenerateKey(rand.Reader, 2048)
		ecPriv := ecKey(t)
		privJWK, _ := jose.JSONWebKey{Key: ecPriv}.MarshalJSON()
		rsaPrivJWK, _ := jose.JSONWebKey{Key: rk}.MarshalJSON()
		_, edk, _ := ed25519.GenerateKey(rand.Reader)
		edPub := edk.Public().(ed25519.PublicKey)
		random := func(n int) string { b := make([]byte, n); rand.Read(b); return b64(b) }
		identity := append([]byte{1}, make([]byte, 31)...)
		type kc struct {
			jwk  string        // the jwk member's JSON
			alg  string        // the header's alg
			sign crypto.Signer // signs (nil: sig)
			sig  func(input []byte) []byte
		}
		pkcs1e1 := func(in []byte) []byte {
			// With e = 1 a "signature" is the padded digest itself.
			h := sha256.Sum256(in)
			prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
			k := (rk.N.BitLen() + 7) / 8
			em := make([]byte, k)
			em[1] = 1
			di := append(prefix, h[:]...)
			for i := 2; i < k-len(di)-1; i++ {
				em[i] = 0xff
			}
			copy(em[k-len(di):], di)
			return em
		}
		cases := map[string]kc{
			"EC private key (d)":     {string(privJWK), "ES256", ecPriv, nil},
			"RSA private key":        {string(rsaPrivJWK), "RS256", rk, nil},
			"oct key, HS256":         {`{"kty":"oct","k":` + q(random(32)) + `}`, "HS256", nil, func([]byte) []byte { return make([]byte, 32) }},
			"oct key, ES256":         {`{"kty":"oct","k":` + q(random(32)) + `}`, "ES256", ecPriv, nil},
			"RSA-1024":               {string(pubJWK(rk1024)), "RS256", rk1024, nil},
			"RSA-2048 with e = 1":    {`{"kty":"RSA","n":` + q(b64(rk.N.Bytes())) + `,"e":"AQ"}`, "RS256", nil, pkcs1e1},
			"RSA with e = 0":         {`{"kty":"RSA","n":` + q(b64(rk.N.Bytes())) + `,"e":"AA"}`, "RS256", rk, nil},
			"RSA with an even n":     {`{"kty":"RSA","n":` + q(b64(new(big.Int).Lsh(rk.N, 1).Bytes())) + `,"e":"AQAB"}`, "RS256", rk, nil},
			"Ed448 crv":              {`{"kty":"OKP","crv":"Ed448","x":` + q(random(57)) + `}`, "EdDSA", edk, nil},
			"X25519 crv":             {`{"kty":"OKP","crv":"X25519","x":` + q(b64(edPub)) + `}`, "EdDSA", edk, nil},
			"OKP with crv P-256":     {`{"kty":"OKP","crv":"P-256","x":` + q(b64(edPub)) + `}`, "EdDSA", edk, nil},
			"EC with crv Ed25519":    {`{"kty":"EC","crv":"Ed25519","x":` + q(b64(edPub)) + `}`, "EdDSA", edk, nil},
			"Ed25519, 31-byte x":     {`{"kty":"OKP","crv":"Ed25519","x":` + q(b64(edPub[:31])) + `}`, "EdDSA", edk, nil},
			"Ed25519, 33-byte x":     {`{"kty":"OKP","crv":"Ed25519","x":` + q(b64(append(append([]byte{}, edPub...), 0))) + `}`, "EdDSA", edk, nil},
			"Ed25519 low-order x":    {`{"kty":"OKP","crv":"Ed25519","x":` + q(b64(identity)) + `}`, "EdDSA", nil, func([]byte) []byte { return append(append([]byte{}, identity...), make([]byte, 32)...) }},
			"EC point off the curve": {`{"kty":"EC","crv":"P-256","x":` + q(random(32)) + `,"y":` + q(random(32)) + `}`, "ES256", ecPriv, nil},
			"EC, P-384 crv with P-256 coordinates": {func() string {
				var m map[string]any
				json.Unmarshal(pubJWK(ecPriv), &m)
				m["crv"] = "P-384"
				b, _ := json.Marshal(m)
				return string(b)
			}(), "ES384", ecPriv, nil},
			"EC P-224":              {`{"kty":"EC","crv":"P-224","x":` + q(random(28)) + `,"y":` + q(random(28)) + `}`, "ES256", ecPriv, nil},
			"jwk null":              {`null`, "ES256", ecPriv, nil},
			"jwk a string":          {q(string(pubJWK(ecPriv))), "ES256", ecPriv, nil},
			"jwk an array":          {`[` + string(pubJWK(ecPriv)) + `]`, "ES256", ecPriv, nil},
			"jwk empty":             {`{}`, "ES256", ecPriv, nil},
			"jwk with a deep value": {`{"kty":"EC","x5c":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "ES256", ecPriv, nil},
		}
		i := 0
		for name, x := range cases {
			tn := nodes[i%3]
			i++
			prot := `{"alg":` + q(x.alg) + `,"jwk":` + x.jwk + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newAcct)) + `}`
			p, pl := b64([]byte(prot)), b64([]byte(`{"termsOfServiceAgreed":true}`))
			var sig []byte
			if x.sign != nil {
				sig = rawSig(x.sign, []byte(p+"."+pl))
			} else {
				sig = x.sig([]byte(p + "." + pl))
			}
			jwsAtkRefused(t, name, send(tn, newAcct, jwsAtkBody(p, pl, b64(sig))), acme.ProbBadPublicKey, acme.ProbMalformed, acme.ProbBadSignatureAlgorithm)
		}
		for _, k := range []crypto.Signer{rk1024, rk, ecPriv, edk} {
			noAccount(t, "refused keys", k.Public())
		}
	})
	run("jwk and kid together, jwk where kid belongs", func(t *testing.T) {
		noNewOrders(t, func() {
			tn := nodes[1]
			for name, h := range map[string]func() string{
				"jwk and kid": func() string {
					return `{"alg":"ES256","kid":` + q(acc.kid) + `,"jwk":` + string(pubJWK(acc.key)) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				},
				"jwk and an empty kid": func() string {
					return `{"alg":"ES256","kid":"","jwk":` + string(pubJWK(acc.key)) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				},
				"jwk where kid belongs": func() string {
					return `{"alg":"ES256","jwk":` + string(pubJWK(acc.key)) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				},
				"neither": func() string {
					return `{"alg":"ES256","nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				},
				"kid null": func() string {
					return `{"alg":"ES256","kid":null,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				},
			} {
				p, pl, s := jwsAtkParts(acc.key, h(), orderPayload)
				jwsAtkRefused(t, name, send(tn, newOrder, jwsAtkBody(p, pl, s)), acme.ProbMalformed)
			}
		})
		// kid at newAccount.
		tn := nodes[2]
		p, pl, s := jwsAtkParts(acc.key, hdr(tn, newAcct), []byte(`{"termsOfServiceAgreed":true}`))
		jwsAtkRefused(t, "kid at newAccount", send(tn, newAcct, jwsAtkBody(p, pl, s)), acme.ProbMalformed)
	})

	// ---------------------------------------------------- kids and keys
	run("kid/another provisioner's, a deactivated one, mangled", func(t *testing.T) {
		// An account of acme-eab, made through EAB.
		r := e.c.do(nodes[0], "POST", "/v1/admin/acme/eab", map[string]any{"provisioner": "acme-eab"}, e.c.admin)
		var ek struct{ ID, Key string }
		r.decode(t, &ek)
		eabKey := ecKey(t)
		rr := a.postJWK(nil, "acme-eab", eabKey, "/acme/acme-eab/new-account", map[string]any{"termsOfServiceAgreed": true,
			"externalAccountBinding": json.RawMessage(eabJWS(t, ek.ID, ek.Key, a.url("/acme/acme-eab/new-account"), pubJWK(eabKey), nil))}, nil)
		if rr.status != http.StatusCreated {
			t.Fatalf("eab account: %d %s", rr.status, rr.body)
		}
		eabKid := rr.header.Get("Location")
		eabID := eabKid[strings.LastIndex(eabKid, "/")+1:]
		d := a.newAccount("acme", nil)
		if r := a.post(nil, d, d.kid, `{"status":"deactivated"}`, nil); r.status != http.StatusOK {
			t.Fatalf("deactivate: %d %s", r.status, r.body)
		}
		accID := strings.TrimPrefix(a.path(acc.kid), base+"/account/")
		noNewOrders(t, func() {
			type kc struct {
				kid string
				key crypto.Signer
			}
			i := 0
			for name, x := range map[string]kc{
				"acme-eab's account URL":                   {eabKid, eabKey},
				"acme-eab's account id under acme":         {a.url(base + "/account/" + eabID), eabKey},
				"a deactivated account":                    {d.kid, d.key},
				"another account, signed by the attacker":  {other.kid, acc.key},
				"the account URL with a trailing slash":    {acc.kid + "/", acc.key},
				"the account URL with a query":             {acc.kid + "?x=1", acc.key},
				"the account URL with a fragment":          {acc.kid + "#x", acc.key},
				"the account URL, scheme uppercase":        {"HTTPS" + strings.TrimPrefix(acc.kid, "https"), acc.key},
				"the account URL through the node address": {"https://" + nodes[0].node.APIAddr() + a.path(acc.kid), acc.key},
				"the account URL at the l7 public URL":     {"https://" + e.l7 + a.path(acc.kid), acc.key},
				"the account URL with /../":                {a.url(base + "/account/x/../" + strings.TrimPrefix(a.path(acc.kid), base+"/account/")), acc.key},
				"the account id alone":                     {strings.TrimPrefix(a.path(acc.kid), base+"/account/"), acc.key},
				"the account's orders URL":                 {acc.kid + "/orders", acc.key},
				"the account id percent-encoded":           {a.url(base + "/account/" + fmt.Sprintf("%%%02X", accID[0]) + accID[1:]), acc.key},
				"a kid of 20000 characters":                {acc.kid + strings.Repeat("A", 20000), acc.key},
			} {
				tn := nodes[i%3]
				i++
				h := `{"alg":"ES256","kid":` + q(x.kid) + `,"nonce":` + q(nonce(tn)) + `,"url":` + q(a.url(newOrder)) + `}`
				p, pl, s := jwsAtkParts(x.key, h, orderPayload)
				r := send(tn, newOrder, jwsAtkBody(p, pl, s))
				jwsAtkRefused(t, name, r, acme.ProbAccountDoesNotExist, acme.ProbUnauthorized, acme.ProbMalformed)
				if len(r.body) > 2048 {
					t.Errorf("%s: the problem echoes %d bytes", name, len(r.body))
				}
			}
		})
	})
	run("keychange/the old key after a key change", func(t *testing.T) {
		kc := a.newAccount("acme", nil)
		nk := ecKey(t)
		inner := flat(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": a.url(base + "/key-change")},
			payloadBytes(map[string]any{"account": kc.kid, "oldKey": pubJWK(kc.key)}))
		if r := a.post(nodes[0], kc, base+"/key-change", inner, nil); r.status != http.StatusOK {
			t.Fatalf("key change: %d %s", r.status, r.body)
		}
		renewed := &atkAcct{key: nk, kid: kc.kid, thumb: thumbOf(nk.Public()), prov: "acme"}
		for _, tn := range nodes {
			jwsAtkRefused(t, "the old key on "+tn.cfg.NodeName, a.post(tn, kc, base+"/new-order", map[string]any{"identifiers": dnsIDs("old.acme.test")}, nil), acme.ProbMalformed, acme.ProbUnauthorized)
			if r := a.post(tn, renewed, kc.kid, nil, nil); r.status != http.StatusOK {
				t.Errorf("the new key on %s: %d %s", tn.cfg.NodeName, r.status, r.body)
			}
		}
		if n := orders(t, renewed); n != 0 {
			t.Errorf("the old key made %d orders", n)
		}
		// The old key's signature on a key change back: refused too.
		back := flat(kc.key, map[string]any{"alg": "ES256", "jwk": pubJWK(kc.key), "url": a.url(base + "/key-change")},
			payloadBytes(map[string]any{"account": kc.kid, "oldKey": pubJWK(nk)}))
		jwsAtkRefused(t, "a key change signed outside by the old key", a.post(nodes[1], kc, base+"/key-change", back, nil))
	})
	run("keychange/inner JWS shapes", func(t *testing.T) {
		kcURL := a.url(base + "/key-change")
		for name, mk := range map[string]func(acct *atkAcct, nk crypto.Signer) []byte{
			`inner "JWK"`: func(acct *atkAcct, nk crypto.Signer) []byte {
				p, pl, s := jwsAtkParts(nk, `{"alg":"ES256","JWK":`+string(pubJWK(nk))+`,"url":`+q(kcURL)+`}`,
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)}))
				return jwsAtkBody(p, pl, s)
			},
			`inner "Url"`: func(acct *atkAcct, nk crypto.Signer) []byte {
				p, pl, s := jwsAtkParts(nk, `{"alg":"ES256","jwk":`+string(pubJWK(nk))+`,"Url":`+q(kcURL)+`}`,
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)}))
				return jwsAtkBody(p, pl, s)
			},
			"inner with a trailing brace": func(acct *atkAcct, nk crypto.Signer) []byte {
				return append(flat(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kcURL},
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)})), '}')
			},
			"inner jwk twice, another key first": func(acct *atkAcct, nk crypto.Signer) []byte {
				p, pl, s := jwsAtkParts(nk, `{"alg":"ES256","jwk":`+string(pubJWK(ecKey(t)))+`,"jwk":`+string(pubJWK(nk))+`,"url":`+q(kcURL)+`}`,
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)}))
				return jwsAtkBody(p, pl, s)
			},
			"inner protected twice": func(acct *atkAcct, nk crypto.Signer) []byte {
				p, pl, s := jwsAtkParts(nk, `{"alg":"ES256","jwk":`+string(pubJWK(nk))+`,"url":`+q(kcURL)+`}`,
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)}))
				return []byte(`{"protected":"` + b64([]byte(`{"alg":"none"}`)) + `","protected":"` + p + `","payload":"` + pl + `","signature":"` + s + `"}`)
			},
			"inner without payload member": func(acct *atkAcct, nk crypto.Signer) []byte {
				p, _, s := jwsAtkParts(nk, `{"alg":"ES256","jwk":`+string(pubJWK(nk))+`,"url":`+q(kcURL)+`}`, nil)
				return []byte(`{"protected":"` + p + `","signature":"` + s + `"}`)
			},
			"inner with an unprotected header": func(acct *atkAcct, nk crypto.Signer) []byte {
				p, pl, s := jwsAtkParts(nk, `{"alg":"ES256","jwk":`+string(pubJWK(nk))+`,"url":`+q(kcURL)+`}`,
					payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)}))
				return []byte(`{"protected":"` + p + `","header":{"kid":"x"},"payload":"` + pl + `","signature":"` + s + `"}`)
			},
			"inner alg none": func(acct *atkAcct, nk crypto.Signer) []byte {
				p := b64([]byte(`{"alg":"none","jwk":` + string(pubJWK(nk)) + `,"url":` + q(kcURL) + `}`))
				return jwsAtkBody(p, b64(payloadBytes(map[string]any{"account": acct.kid, "oldKey": pubJWK(acct.key)})), "")
			},
		} {
			acct := a.newAccount("acme", nil)
			nk := ecKey(t)
			r := a.post(nodes[len(name)%3], acct, base+"/key-change", mk(acct, nk), nil)
			jwsAtkRefused(t, name, r)
			if r := a.post(nodes[0], acct, acct.kid, nil, nil); r.status != http.StatusOK {
				t.Errorf("%s: the account no longer answers to its key: %d %s", name, r.status, truncateBody(r.body))
			}
		}
	})

	// ----------------------------------------------------------------- url
	run("url/mismatches", func(t *testing.T) {
		noNewOrders(t, func() {
			u := a.url(newOrder)
			i := 0
			for name, ju := range map[string]string{
				"a trailing slash":              u + "/",
				"the path uppercase":            a.url("/ACME/acme/NEW-ORDER"),
				"the directory uppercase":       a.url("/acme/ACME/new-order"),
				"scheme uppercase":              "HTTPS" + strings.TrimPrefix(u, "https"),
				"scheme http":                   "http" + strings.TrimPrefix(u, "https"),
				"another host":                  "https://evil.example" + newOrder,
				"the node's own address":        "https://" + nodes[i%3].node.APIAddr() + newOrder,
				"the l7 public URL":             "https://" + e.l7 + newOrder,
				"a fragment":                    u + "#x",
				"a query":                       u + "?x",
				"an empty query":                u + "?",
				"a dot segment":                 a.url("/acme/./acme/new-order"),
				"a double slash":                a.url("/acme//acme/new-order"),
				"percent-encoded":               a.url("/acme/acme/new%2Dorder"),
				"a trailing space":              u + " ",
				"a trailing NUL":                u + "\x00",
				"userinfo":                      strings.Replace(u, "https://", "https://user@", 1),
				"another directory's new-order": a.url("/acme/acme-eab/new-order"),
				"the path only":                 newOrder,
			} {
				tn := nodes[i%3]
				i++
				p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(ju)+`}`, orderPayload)
				jwsAtkRefused(t, name, send(tn, newOrder, jwsAtkBody(p, pl, s)), acme.ProbUnauthorized)
			}
			// Sent to a path the url does not name, signed for it.
			for _, path := range []string{newOrder + "/", "/acme/acme/new-order%2F", "/acme/acme/NEW-ORDER", "/acme//acme/new-order"} {
				tn := nodes[1]
				p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","kid":`+q(acc.kid)+`,"nonce":`+q(nonce(tn))+`,"url":`+q(a.url(path))+`}`, orderPayload)
				r := send(tn, path, jwsAtkBody(p, pl, s))
				if r.status >= 300 && r.status < 400 {
					t.Logf("%s: %d to %s (net/http cleans the path)", path, r.status, r.header.Get("Location"))
					continue
				}
				jwsAtkRefused(t, "sent to "+path, r)
			}
		})
	})

	// --------------------------------------------------------------- nonce
	run("nonce/missing, empty, reused, another node's", func(t *testing.T) {
		path := a.path(acc.kid)
		noNewOrders(t, func() {
			for name, h := range map[string]string{
				"no nonce":                `{"alg":"ES256","kid":` + q(acc.kid) + `,"url":` + q(a.url(path)) + `}`,
				"an empty nonce":          `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":"","url":` + q(a.url(path)) + `}`,
				"a nonce null":            `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":null,"url":` + q(a.url(path)) + `}`,
				"a nonce a number":        `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":1,"url":` + q(a.url(path)) + `}`,
				"a 20000-character nonce": `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":` + q(strings.Repeat("A", 20000)) + `,"url":` + q(a.url(path)) + `}`,
			} {
				p, pl, s := jwsAtkParts(acc.key, h, nil)
				r := send(nodes[len(name)%3], path, jwsAtkBody(p, pl, s))
				jwsAtkRefused(t, name, r, acme.ProbBadNonce, acme.ProbMalformed)
				if len(r.body) > 2048 {
					t.Errorf("%s: the problem echoes %d bytes", name, len(r.body))
				}
			}
		})
		// Node 0's nonce, used at node 1, then replayed at each node.
		p, pl, s := jwsAtkParts(acc.key, hdr(nodes[0], path), nil)
		body := jwsAtkBody(p, pl, s)
		if r := send(nodes[1], path, body); r.status != http.StatusOK {
			t.Fatalf("another node's nonce, once: %d %s", r.status, r.body)
		}
		for _, tn := range nodes {
			jwsAtkRefused(t, "replayed at "+tn.cfg.NodeName, send(tn, path, body), acme.ProbBadNonce)
		}
		// A refused request does not spend its nonce's replay protection:
		// sent with a bad signature first, the same nonce still works once.
		n := nonce(nodes[2])
		h := `{"alg":"ES256","kid":` + q(acc.kid) + `,"nonce":` + q(n) + `,"url":` + q(a.url(path)) + `}`
		p, pl, s = jwsAtkParts(other.key, h, nil)
		jwsAtkRefused(t, "someone else's signature with a fresh nonce", send(nodes[2], path, jwsAtkBody(p, pl, s)), acme.ProbMalformed)
		p, pl, s = jwsAtkParts(acc.key, h, nil)
		if r := send(nodes[0], path, jwsAtkBody(p, pl, s)); r.status != http.StatusOK {
			t.Errorf("the nonce after a forged use: %d %s", r.status, r.body)
		}
	})

	// ---------------------------------------------------- size and depth
	run("size and nesting", func(t *testing.T) {
		noNewOrders(t, func() {
			tn := nodes[1]
			big := func() []byte {
				p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), orderPayload)
				return []byte(`{"protected":"` + p + `","payload":"` + pl + `","signature":"` + s + `"` + strings.Repeat(" ", 70<<10) + `}`)
			}
			for name, body := range map[string][]byte{
				"70 KiB (whitespace)":        big(),
				"a 1 MiB protected member":   []byte(`{"protected":"` + strings.Repeat("A", 1<<20) + `"}`),
				"arrays 20000 deep":          []byte(strings.Repeat("[", 20000) + strings.Repeat("]", 20000)),
				"objects 10000 deep":         []byte(strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)),
				"a header member 20000 deep": []byte(`{"header":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`),
				"a protected header 12000 deep": func() []byte {
					p, pl, s := jwsAtkParts(acc.key, `{"alg":"ES256","x":`+strings.Repeat("[", 12000)+strings.Repeat("]", 12000)+`}`, orderPayload)
					return jwsAtkBody(p, pl, s)
				}(),
				"a payload 12000 deep": func() []byte {
					p, pl, s := jwsAtkParts(acc.key, hdr(tn, newOrder), []byte(`{"identifiers":`+strings.Repeat("[", 12000)+strings.Repeat("]", 12000)+`}`))
					return jwsAtkBody(p, pl, s)
				}(),
			} {
				r, err := a.rawTry(a.target(tn), "POST", newOrder, body, "application/jose+json")
				if err != nil {
					t.Logf("%s: the server closed the connection (%v)", name, err)
					continue
				}
				jwsAtkRefused(t, name, r)
			}
			// Chunked, without a length.
			req, _ := http.NewRequest("POST", "https://"+a.target(tn)+newOrder, struct{ *bytes.Reader }{bytes.NewReader(big())})
			req.ContentLength = -1
			req.Header.Set("Content-Type", "application/jose+json")
			if resp, err := a.hc.Do(req); err == nil {
				body := new(bytes.Buffer)
				body.ReadFrom(resp.Body)
				resp.Body.Close()
				jwsAtkRefused(t, "chunked 70 KiB", reply{status: resp.StatusCode, header: resp.Header, body: body.Bytes()})
			}
		})
	})

	// Nothing above made a certificate or an order for anyone.
	run("nothing was made", func(t *testing.T) {
		if n := len(a.certs("acme")); n != 0 {
			t.Errorf("%d certificates of the acme provisioner", n)
		}
		if n := orders(t, other); n != 0 {
			t.Errorf("the other account has %d orders", n)
		}
		if n := orders(t, acc); n != 0 {
			t.Errorf("the attacker's account has %d orders, all made by requests that should have been refused", n)
		}
	})
}

// jwsAtkShort is a reply body on one line, cut short.
func jwsAtkShort(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func b64dec(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}
