package acme

import (
	"context"
	"encoding/json"
	"errors"
	"net/mail"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// accountView is an account as RFC 8555 section 7.1.2 shows it.
type accountView struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact,omitempty"`
	Orders  string   `json:"orders"`
}

func (s *Service) accountResponse(c *Call, acc *fsm.ACMEAccount, created bool) *Response {
	url := c.Base + "/account/" + acc.ID
	return &Response{Created: created, Location: url,
		Body: accountView{Status: acc.Status, Contact: acc.Contact, Orders: url + "/orders"}}
}

type newAccountRequest struct {
	Contact              []string        `json:"contact"`
	TermsOfServiceAgreed bool            `json:"termsOfServiceAgreed"`
	OnlyReturnExisting   bool            `json:"onlyReturnExisting"`
	ExternalAccount      json.RawMessage `json:"externalAccountBinding"`
}

// NewAccount creates an account for the request's key, or finds the one it
// has (RFC 8555 section 7.3).
func (s *Service) NewAccount(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byJWK)
	if err != nil {
		return nil, err
	}
	var req newAccountRequest
	if err := decodePayload(sg.payload, &req); err != nil {
		return nil, err
	}
	thumb, err := thumbprint(sg.jwk)
	if err != nil {
		return nil, err
	}
	if acc, err := s.state.ACMEAccountByKey(c.Provisioner.Name, thumb); err == nil {
		return s.accountResponse(c, acc, false), nil
	} else if !errors.Is(err, fsm.ErrNotFound) {
		return nil, err
	}
	if req.OnlyReturnExisting {
		return nil, problem(errs.Invalid, ProbAccountDoesNotExist, "no account has this key")
	}
	if err := checkContacts(req.Contact); err != nil {
		return nil, err
	}
	jwk, err := sg.jwk.MarshalJSON()
	if err != nil {
		return nil, err
	}
	acc := fsm.ACMEAccount{ID: randomID(12), Provisioner: c.Provisioner.Name, Thumbprint: thumb, JWK: jwk, Contact: req.Contact}
	requireEAB := c.Provisioner.ACME != nil && c.Provisioner.ACME.RequireEAB
	switch {
	case len(req.ExternalAccount) > 0:
		if acc.EAB, err = s.verifyEAB(c, req.ExternalAccount, sg.jwk); err != nil {
			return nil, err
		}
	case requireEAB:
		return nil, problem(errs.Unauthenticated, ProbExternalAccountRequired, "this directory requires an external account binding")
	}
	err = s.ca.ProposeACME(ctx, s.actor(c, nil), fsm.CmdACMEAccountNew, fsm.ACMEAccountNew{Account: acc})
	if errors.Is(err, fsm.ErrACMEAccountExists) {
		// Made a moment ago through another node, for this very key.
		if err := s.sync(ctx); err != nil {
			return nil, err
		}
		existing, lerr := s.state.ACMEAccountByKey(c.Provisioner.Name, thumb)
		if lerr != nil {
			return nil, err
		}
		return s.accountResponse(c, existing, false), nil
	}
	if err != nil {
		return nil, err
	}
	acc.Status = fsm.ACMEValid
	return s.accountResponse(c, &acc, true), nil
}

// verifyEAB checks an external account binding (RFC 8555 section 7.3.4): a
// JWS over the account's key, MACed with a key an admin minted for this
// provisioner. It returns the binding key's id.
func (s *Service) verifyEAB(c *Call, raw json.RawMessage, accountKey *jose.JSONWebKey) (string, error) {
	jws, err := jose.ParseSignedJSON(string(raw), []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512})
	if err != nil || len(jws.Signatures) != 1 {
		return "", malformed("externalAccountBinding is not a JWS MACed with HS256, HS384 or HS512")
	}
	h := jws.Signatures[0].Protected
	if url, _ := h.ExtraHeaders["url"].(string); url != c.URL {
		return "", unauthorized("externalAccountBinding url must be the newAccount URL")
	}
	if h.Nonce != "" {
		return "", malformed("externalAccountBinding must not carry a nonce")
	}
	key, err := s.state.ACMEEAB(h.KeyID)
	if err != nil || key.Provisioner != c.Provisioner.Name {
		return "", unauthorized("externalAccountBinding: unknown key id %q", truncate(h.KeyID))
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return "", unauthorized("externalAccountBinding: the MAC does not verify")
	}
	var bound jose.JSONWebKey
	if err := bound.UnmarshalJSON(payload); err != nil || !bound.IsPublic() {
		return "", malformed("externalAccountBinding payload is not a public JWK")
	}
	t1, err1 := thumbprint(&bound)
	t2, err2 := thumbprint(accountKey)
	if err1 != nil || err2 != nil || t1 != t2 {
		return "", unauthorized("externalAccountBinding binds another key than the request's")
	}
	// Bound, revoked or expired: the state machine decides, in order with
	// any other use of the key.
	return key.ID, nil
}

// checkContacts allows mailto: addresses only, as Boulder and step-ca do.
func checkContacts(cs []string) error {
	if len(cs) > maxContacts {
		return problem(errs.Invalid, "invalidContact", "at most %d contacts", maxContacts)
	}
	for _, c := range cs {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok || len(c) > 254 {
			return problem(errs.Invalid, "invalidContact", "contact %q: only mailto: addresses are supported", truncate(c))
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || strings.ContainsAny(addr, ",?") {
			return problem(errs.Invalid, "invalidContact", "contact %q is not one email address", truncate(c))
		}
	}
	return nil
}

type accountUpdate struct {
	Contact *[]string `json:"contact"`
	Status  string    `json:"status"`
}

// Account shows (POST-as-GET), updates or deactivates the signing
// account (RFC 8555 sections 7.3.2 and 7.3.6).
func (s *Service) Account(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	if sg.account.ID != c.ID {
		return nil, unauthorized("an account may only read or change itself")
	}
	if postAsGet(sg) {
		return s.accountResponse(c, sg.account, false), nil
	}
	var req accountUpdate
	if err := decodePayload(sg.payload, &req); err != nil {
		return nil, err
	}
	up := fsm.ACMEAccountUpdate{ID: c.ID, Contact: req.Contact}
	switch req.Status {
	case "":
	case fsm.ACMEDeactivated:
		up.Deactivate = true
	default:
		return nil, malformed("status may only be set to deactivated")
	}
	if req.Contact != nil {
		if err := checkContacts(*req.Contact); err != nil {
			return nil, err
		}
	}
	if up.Contact == nil && !up.Deactivate {
		return s.accountResponse(c, sg.account, false), nil
	}
	if err := s.ca.ProposeACME(ctx, s.actor(c, sg.account), fsm.CmdACMEAccountUpdate, up); err != nil {
		return nil, err
	}
	acc := *sg.account
	if up.Contact != nil {
		acc.Contact = *up.Contact
	}
	if up.Deactivate {
		acc.Status = fsm.ACMEDeactivated
	}
	return s.accountResponse(c, &acc, false), nil
}

// AccountOrders lists the account's orders, a page at a time (RFC 8555
// section 7.1.2.1); c.Type carries the cursor of a next page.
func (s *Service) AccountOrders(ctx context.Context, c *Call, cursor string) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	if sg.account.ID != c.ID {
		return nil, unauthorized("an account may only list its own orders")
	}
	ids, err := s.state.ACMEOrders(c.ID, cursor, ordersPage+1)
	if err != nil {
		return nil, err
	}
	resp := &Response{}
	if len(ids) > ordersPage {
		ids = ids[:ordersPage]
		resp.Links = append(resp.Links, Link{URL: c.Base + "/account/" + c.ID + "/orders?cursor=" + ids[len(ids)-1], Rel: "next"})
	}
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = c.Base + "/order/" + id
	}
	resp.Body = map[string][]string{"orders": urls}
	return resp, nil
}

// KeyChange replaces the account's key (RFC 8555 section 7.3.5): the
// outer JWS is signed by the account, the inner one by the new key.
func (s *Service) KeyChange(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	h, err := parseJWS(sg.payload)
	if err != nil {
		return nil, err
	}
	if h.URL != c.URL {
		return nil, unauthorized("the inner JWS url must be the keyChange URL")
	}
	if h.JWK == nil || h.KID != "" || h.Nonce != "" {
		return nil, malformed("the inner JWS carries the new key as jwk, and no kid or nonce")
	}
	newKey := h.JWK
	if err := checkAccountKey(newKey); err != nil {
		return nil, err
	}
	if !algMatchesKey(h.Alg, newKey) {
		return nil, problem(errs.Invalid, ProbBadSignatureAlgorithm, "algorithm %s does not suit the new key", h.Alg)
	}
	if !h.verifySig(newKey.Key) {
		return nil, malformed("the inner JWS signature does not verify")
	}
	inner := h.payload
	var req struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err := decodePayload(inner, &req); err != nil {
		return nil, err
	}
	if req.Account != c.Base+"/account/"+sg.account.ID {
		return nil, unauthorized("the inner JWS names another account")
	}
	var old jose.JSONWebKey
	if err := old.UnmarshalJSON(req.OldKey); err != nil {
		return nil, malformed("oldKey is not a JWK")
	}
	oldThumb, err := thumbprint(&old)
	if err != nil || oldThumb != sg.account.Thumbprint {
		return nil, unauthorized("oldKey is not the account's key")
	}
	newThumb, err := thumbprint(newKey)
	if err != nil {
		return nil, err
	}
	jwk, err := newKey.MarshalJSON()
	if err != nil {
		return nil, err
	}
	err = s.ca.ProposeACME(ctx, s.actor(c, sg.account), fsm.CmdACMEAccountUpdate,
		fsm.ACMEAccountUpdate{ID: sg.account.ID, JWK: jwk, Thumbprint: newThumb, OldThumbprint: oldThumb})
	if errors.Is(err, fsm.ErrACMEAccountKey) {
		p := problem(errs.Conflict, ProbMalformed, "the new key belongs to another account")
		if other := errs.Of(err).Message; other != "" && !strings.Contains(other, " ") {
			return &Response{Location: c.Base + "/account/" + other}, p
		}
		return nil, p
	}
	if err != nil {
		return nil, err
	}
	acc := *sg.account
	acc.JWK, acc.Thumbprint = jwk, newThumb
	return s.accountResponse(c, &acc, false), nil
}
