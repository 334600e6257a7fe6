package acme

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

type orderView struct {
	Status         string               `json:"status"`
	Expires        string               `json:"expires"`
	Identifiers    []fsm.ACMEIdentifier `json:"identifiers"`
	NotAfter       string               `json:"notAfter,omitempty"`
	Authorizations []string             `json:"authorizations"`
	Finalize       string               `json:"finalize"`
	Certificate    string               `json:"certificate,omitempty"`
	Replaces       string               `json:"replaces,omitempty"`
}

type authzView struct {
	Identifier fsm.ACMEIdentifier `json:"identifier"`
	Status     string             `json:"status"`
	Expires    string             `json:"expires"`
	Challenges []challengeView    `json:"challenges"`
	Wildcard   bool               `json:"wildcard,omitempty"`
}

type challengeView struct {
	Type      string           `json:"type"`
	URL       string           `json:"url"`
	Status    string           `json:"status"`
	Token     string           `json:"token"`
	Validated string           `json:"validated,omitempty"`
	Error     *fsm.ACMEProblem `json:"error,omitempty"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Service) orderView(c *Call, o *fsm.ACMEOrder, zs []fsm.ACMEAuthz) orderView {
	v := orderView{Status: fsm.ACMEOrderStatus(o, zs, s.now()), Expires: stamp(o.Expires), Identifiers: o.Identifiers,
		Finalize: c.Base + "/order/" + o.ID + "/finalize", Replaces: o.Replaces}
	if !o.NotAfter.IsZero() {
		v.NotAfter = stamp(o.NotAfter)
	}
	for _, id := range o.Authzs {
		v.Authorizations = append(v.Authorizations, c.Base+"/authz/"+id)
	}
	if o.Cert != "" {
		v.Certificate = c.Base + "/cert/" + o.Cert
	}
	return v
}

func (s *Service) challengeView(c *Call, z *fsm.ACMEAuthz, ch *fsm.ACMEChallenge) challengeView {
	v := challengeView{Type: ch.Type, URL: c.Base + "/chall/" + z.ID + "/" + ch.Type, Status: ch.Status, Token: ch.Token, Error: ch.Error}
	if !ch.Validated.IsZero() {
		v.Validated = stamp(ch.Validated)
	}
	if ch.Status == fsm.ACMEProcessing && !s.now().Before(ch.Deadline) {
		v.Status = fsm.ACMEPending // its validator died: it may be tried again
	}
	return v
}

func (s *Service) authzView(c *Call, z *fsm.ACMEAuthz) authzView {
	v := authzView{Identifier: z.Identifier, Status: fsm.ACMEAuthzStatus(z, s.now()), Expires: stamp(z.Expires), Wildcard: z.Wildcard}
	for i := range z.Challenges {
		v.Challenges = append(v.Challenges, s.challengeView(c, z, &z.Challenges[i]))
	}
	return v
}

type newOrderRequest struct {
	Identifiers []fsm.ACMEIdentifier `json:"identifiers"`
	NotBefore   string               `json:"notBefore"`
	NotAfter    string               `json:"notAfter"`
	Replaces    string               `json:"replaces"`
}

// NewOrder creates an order and one new authorization per identifier
// (RFC 8555 section 7.4). The provisioner's policy is applied here, so an
// order the authority would not fill is refused at once.
func (s *Service) NewOrder(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	var req newOrderRequest
	if err := decodePayload(sg.payload, &req); err != nil {
		return nil, err
	}
	if req.NotBefore != "" {
		return nil, malformed("notBefore is not supported: certificates are valid from their issuance")
	}
	for i := range req.Identifiers {
		id := &req.Identifiers[i]
		id.Value = strings.ToLower(strings.TrimSuffix(id.Value, "."))
	}
	if err := s.ca.CheckACMEIdentifiers(c.Provisioner, req.Identifiers); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	o := fsm.ACMEOrder{ID: randomID(12), Provisioner: c.Provisioner.Name, Account: sg.account.ID,
		Identifiers: dedupe(req.Identifiers), Expires: now.Add(orderLifetime)}
	if req.NotAfter != "" {
		t, err := time.Parse(time.RFC3339, req.NotAfter)
		if err != nil || !t.After(now) {
			return nil, malformed("notAfter must be an RFC 3339 time in the future")
		}
		o.NotAfter = t.UTC().Truncate(time.Second)
	}
	if req.Replaces != "" {
		if o.Replaces, err = s.replaces(ctx, sg.account, req.Replaces); err != nil {
			return nil, err
		}
	}
	offered := authority.ChallengesOf(c.Provisioner)
	var zs []fsm.ACMEAuthz
	for _, id := range o.Identifiers {
		z := fsm.ACMEAuthz{ID: randomID(12), Account: sg.account.ID, Identifier: id, Expires: now.Add(authzLifetime)}
		if v, ok := strings.CutPrefix(id.Value, "*."); ok {
			z.Wildcard, z.Identifier.Value = true, v
		}
		token := randomID(32)
		for _, typ := range offered {
			if id.Type == "ip" && typ == authority.ChallengeDNS01 {
				continue // dns-01 proves a name, not an address
			}
			if z.Wildcard && typ != authority.ChallengeDNS01 {
				continue // only dns-01 proves control of a whole domain (RFC 8555 section 7.1.3)
			}
			z.Challenges = append(z.Challenges, fsm.ACMEChallenge{Type: typ, Token: token, Status: fsm.ACMEPending})
		}
		if len(z.Challenges) == 0 {
			return nil, problem(errs.Forbidden, ProbRejectedIdentifier, "no challenge this directory offers can prove %s", id.Value)
		}
		o.Authzs = append(o.Authzs, z.ID)
		zs = append(zs, z)
	}
	if err := s.ca.ProposeACME(ctx, s.actor(c, sg.account), fsm.CmdACMEOrderNew, fsm.ACMEOrderNew{Order: o, Authzs: zs}); err != nil {
		return nil, err
	}
	o.Status = fsm.ACMEPending
	for i := range zs {
		zs[i].Status = fsm.ACMEPending
	}
	return &Response{Created: true, Location: c.Base + "/order/" + o.ID, Body: s.orderView(c, &o, zs)}, nil
}

func dedupe(ids []fsm.ACMEIdentifier) []fsm.ACMEIdentifier {
	var out []fsm.ACMEIdentifier
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// replaces checks an order's "replaces" (RFC 9773 section 5): an ARI
// certificate id of a certificate this account holds.
func (s *Service) replaces(ctx context.Context, acc *fsm.ACMEAccount, certID string) (string, error) {
	serial, err := SerialOfCertID(certID)
	if err != nil {
		return "", err
	}
	rec, err := s.state.Cert(serial)
	if err != nil || rec.Requester != authority.ACMERequester(acc.Provisioner, acc.ID) {
		return "", malformed("replaces names no certificate of this account")
	}
	return serial, nil
}

// order reads an order of the signing account.
func (s *Service) order(c *Call, acc *fsm.ACMEAccount) (*fsm.ACMEOrder, []fsm.ACMEAuthz, error) {
	o, zs, err := s.state.ACMEOrder(c.ID)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && o.Account != acc.ID) {
		return nil, nil, notFound("order", c.ID)
	}
	return o, zs, err
}

// Order shows an order (POST-as-GET).
func (s *Service) Order(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	o, zs, err := s.order(c, sg.account)
	if err != nil {
		return nil, err
	}
	return &Response{Body: s.orderView(c, o, zs)}, nil
}

// Finalize issues the order's certificate for a CSR (RFC 8555 section
// 7.4). Finalizing a valid order again with the same key answers the
// order as it is: a client whose answer was lost may ask twice, and an
// order never yields two certificates.
func (s *Service) Finalize(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	var req struct {
		CSR string `json:"csr"`
	}
	if err := decodePayload(sg.payload, &req); err != nil {
		return nil, err
	}
	csr, err := base64.RawURLEncoding.DecodeString(req.CSR)
	if err != nil || len(csr) == 0 {
		return nil, problem(errs.Invalid, ProbBadCSR, "csr must be a DER CSR in base64url")
	}
	key, err := s.keys.of(sg.account.JWK)
	if err != nil {
		return nil, err
	}
	o, zs, err := s.order(c, sg.account)
	if err != nil {
		return nil, err
	}
	// A valid order answers a retry with its certificate (FinalizeACME).
	if st := fsm.ACMEOrderStatus(o, zs, s.now()); st != fsm.ACMEReady && st != fsm.ACMEValid {
		return nil, problem(errs.Forbidden, ProbOrderNotReady, "the order is %s, not ready", st)
	}
	if _, err := s.ca.FinalizeACME(ctx, c.Provisioner, o, csr, key.Key); err != nil {
		return nil, err
	}
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	if o, zs, err = s.order(c, sg.account); err != nil {
		return nil, err
	}
	return &Response{Location: c.Base + "/order/" + o.ID, Body: s.orderView(c, o, zs)}, nil
}

// Certificate downloads an issued certificate with its chain, PEM (RFC
// 8555 section 7.4.2), to the account that ordered it.
func (s *Service) Certificate(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, err
	}
	rec, err := s.state.Cert(c.ID)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && rec.Requester != s.actor(c, sg.account)) {
		return nil, notFound("certificate", c.ID)
	}
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	for _, der := range s.ca.Chain(rec) {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return &Response{PEM: out}, nil
}

// Authz shows an authorization (POST-as-GET), or deactivates it (RFC 8555
// section 7.5.2). Showing one whose validation outlived its deadline (the
// validating node died) starts that validation again here.
func (s *Service) Authz(ctx context.Context, c *Call) (*Response, error) {
	sg, z, err := s.signedAuthz(ctx, c)
	if err != nil {
		return nil, err
	}
	if !postAsGet(sg) {
		var req struct {
			Status string `json:"status"`
		}
		if err := decodePayload(sg.payload, &req); err != nil {
			return nil, err
		}
		if req.Status != fsm.ACMEDeactivated {
			return nil, malformed("status may only be set to deactivated")
		}
		err := s.ca.ProposeACME(ctx, s.actor(c, sg.account), fsm.CmdACMEChallenge,
			fsm.ACMEChallengeUpdate{Authz: z.ID, Account: z.Account, Status: fsm.ACMEDeactivated})
		if err != nil {
			return nil, err
		}
		z.Status = fsm.ACMEDeactivated
		return s.authzResponse(c, z), nil
	}
	for i := range z.Challenges {
		ch := &z.Challenges[i]
		if ch.Status == fsm.ACMEProcessing && !s.now().Before(ch.Deadline) {
			if nz, err := s.startValidation(ctx, c, sg.account, z, ch.Type); err == nil {
				z = nz
			}
			break
		}
	}
	return s.authzResponse(c, z), nil
}

// signedAuthz verifies an account's request about the authorization c.ID,
// which must be the account's.
func (s *Service) signedAuthz(ctx context.Context, c *Call) (*signed, *fsm.ACMEAuthz, error) {
	sg, err := s.verify(ctx, c, byKID)
	if err != nil {
		return nil, nil, err
	}
	z, err := s.authz(c.ID, sg.account)
	return sg, z, err
}

func (s *Service) authz(id string, acc *fsm.ACMEAccount) (*fsm.ACMEAuthz, error) {
	z, err := s.state.ACMEAuthz(id)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && z.Account != acc.ID) {
		return nil, notFound("authorization", id)
	}
	return z, err
}

// Challenge starts the validation of a challenge (RFC 8555 section
// 7.5.1), or shows it as it is when it was started already.
func (s *Service) Challenge(ctx context.Context, c *Call) (*Response, error) {
	sg, z, err := s.signedAuthz(ctx, c)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(z.Challenges, func(ch fsm.ACMEChallenge) bool { return ch.Type == c.Type })
	if i < 0 {
		return nil, notFound("challenge", c.ID+"/"+c.Type)
	}
	ch := &z.Challenges[i]
	startable := ch.Status == fsm.ACMEPending || (ch.Status == fsm.ACMEProcessing && !s.now().Before(ch.Deadline))
	if !postAsGet(sg) && startable && fsm.ACMEAuthzStatus(z, s.now()) == fsm.ACMEPending {
		if z, err = s.startValidation(ctx, c, sg.account, z, c.Type); err != nil {
			return nil, err
		}
		ch = &z.Challenges[i]
	}
	resp := &Response{Body: s.challengeView(c, z, ch), Links: []Link{{URL: c.Base + "/authz/" + z.ID, Rel: "up"}}}
	if ch.Status == fsm.ACMEProcessing {
		resp.RetryAfter = time.Second
	}
	return resp, nil
}

// quickValidation is how long a challenge's answer waits for its outcome
// (startValidation).
const quickValidation = 2 * time.Second

// authzResponse shows an authorization; while a validation runs, the
// client is told to look again in a second.
func (s *Service) authzResponse(c *Call, z *fsm.ACMEAuthz) *Response {
	resp := &Response{Body: s.authzView(c, z)}
	for _, ch := range z.Challenges {
		if ch.Status == fsm.ACMEProcessing {
			resp.RetryAfter = time.Second
		}
	}
	return resp
}

// startValidation validates the challenge from this node. Most
// validations take milliseconds: their outcome is committed alone, in one
// entry. One that takes longer than quickValidation is committed as
// processing, with a deadline, and its outcome later; a node that dies
// meanwhile leaves it processing until the deadline, and past it any node
// starts it again. A node that dies before committing anything leaves it
// pending.
func (s *Service) startValidation(ctx context.Context, c *Call, acc *fsm.ACMEAccount, z *fsm.ACMEAuthz, typ string) (*fsm.ACMEAuthz, error) {
	i := slices.IndexFunc(z.Challenges, func(ch fsm.ACMEChallenge) bool { return ch.Type == typ })
	ch := z.Challenges[i]
	attempt := randomID(9)
	actor := s.actor(c, acc)
	outcome := make(chan validation, 1)
	go func() { outcome <- s.validate(z.Identifier, z.ID, acc, ch, attempt) }()
	t := time.NewTimer(quickValidation)
	defer t.Stop()
	var err error
	select {
	case v := <-outcome:
		if v.err != nil {
			return nil, v.err // nothing committed: the challenge may be tried again
		}
		err = s.ca.ProposeACME(ctx, actor, fsm.CmdACMEChallenge, v.up)
	case <-t.C:
		up := fsm.ACMEChallengeUpdate{Authz: z.ID, Account: acc.ID, Type: typ, Status: fsm.ACMEProcessing,
			Attempt: attempt, Deadline: s.now().Add(validationDeadline)}
		err = s.ca.ProposeACME(ctx, actor, fsm.CmdACMEChallenge, up)
		go s.commitOutcome(actor, outcome)
	case <-ctx.Done():
		go s.commitOutcome(actor, outcome)
		return nil, ctx.Err()
	}
	if err != nil && !errors.Is(err, fsm.ErrACMEChallenge) { // ErrACMEChallenge: started or ended elsewhere a moment ago
		return nil, err
	}
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	return s.authz(z.ID, acc)
}

// commitOutcome commits a validation's outcome that arrived after its
// request was answered.
func (s *Service) commitOutcome(actor string, outcome <-chan validation) {
	v := <-outcome
	if v.err != nil {
		s.log.Warn("challenge not validated; it stays processing until its deadline", "authz", v.up.Authz, "type", v.up.Type, "err", v.err)
		return
	}
	up := v.up
	ctx, cancel := context.WithTimeout(s.ctx, validationDeadline)
	defer cancel()
	if err := s.ca.ProposeACME(ctx, actor, fsm.CmdACMEChallenge, up); err != nil && !errors.Is(err, fsm.ErrACMEChallenge) {
		// The challenge stays processing until its deadline; then any
		// node may start it again.
		s.log.Warn("challenge result not committed", "authz", up.Authz, "type", up.Type, "err", err)
	}
}

// validation is a challenge's outcome, to commit; err: none could be had
// (too few perspectives answered), and nothing is committed.
type validation struct {
	up  fsm.ACMEChallengeUpdate
	err error
}

// validate checks one challenge, from this node and as many other zones
// as acme.perspectives asks, and returns its outcome.
func (s *Service) validate(id fsm.ACMEIdentifier, authz string, acc *fsm.ACMEAccount, ch fsm.ACMEChallenge, attempt string) validation {
	ctx, cancel := context.WithTimeout(s.ctx, validationDeadline)
	defer cancel()
	keyAuth := KeyAuthorization(ch.Token, acc.Thumbprint)
	up := fsm.ACMEChallengeUpdate{Authz: authz, Account: acc.ID, Type: ch.Type, Status: fsm.ACMEValid, Attempt: attempt}
	var prob *fsm.ACMEProblem
	if err := s.validator.Validate(ctx, id, ch.Type, ch.Token, keyAuth); err != nil {
		p := ProblemOf(err)
		prob = &fsm.ACMEProblem{Type: ProblemPrefix + p.Type, Detail: p.Detail}
	} else if s.validator.cfg.Perspectives > 1 {
		var err error
		prob, err = s.otherPerspectives(ctx, s.validator.cfg.Perspectives, validateRequest{Identifier: id, Type: ch.Type, Token: ch.Token, KeyAuth: keyAuth})
		if err != nil {
			return validation{up: up, err: err}
		}
	}
	if prob != nil {
		up.Status, up.Error = fsm.ACMEInvalid, prob
		s.log.Info("challenge failed", "authz", authz, "type", ch.Type, "identifier", id.Value, "problem", prob.Type, "detail", prob.Detail)
	} else {
		up.Validated = s.now().UTC().Truncate(time.Second)
	}
	return validation{up: up}
}

// RevokeCert revokes a certificate (RFC 8555 section 7.6): signed by the
// account that ordered it, or with the certificate's own key (jwk).
func (s *Service) RevokeCert(ctx context.Context, c *Call) (*Response, error) {
	sg, err := s.verify(ctx, c, byEither)
	if err != nil {
		return nil, err
	}
	var req struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if err := decodePayload(sg.payload, &req); err != nil {
		return nil, err
	}
	der, err := base64.RawURLEncoding.DecodeString(req.Certificate)
	if err != nil {
		return nil, malformed("certificate must be DER in base64url")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, malformed("certificate does not parse")
	}
	reason := ""
	if req.Reason != nil {
		if reason = acmeReasons[*req.Reason]; reason == "" {
			return nil, problem(errs.Invalid, ProbBadRevocationReason, "reason %d is not one of 0, 1, 3, 4, 5, 9", *req.Reason)
		}
	}
	serial := authority.SerialHex(cert.SerialNumber)
	rec, err := s.state.Cert(serial)
	if err != nil || string(rec.DER) != string(der) {
		return nil, notFound("certificate", serial)
	}
	rr := authority.RevokeRequest{Serial: serial, Reason: reason}
	if sg.account != nil {
		rr.ACMEAccount = s.actor(c, sg.account)
	} else {
		rr.CertKey = sg.jwk.Key
	}
	if _, err := s.ca.Revoke(ctx, rr); err != nil {
		if errs.Of(err) != nil && errs.Of(err).Kind == errs.Forbidden {
			return nil, unauthorized("%s", errs.Of(err).Message)
		}
		return nil, err
	}
	return &Response{}, nil
}

// acmeReasons are the RFC 5280 reasons a subscriber may give.
var acmeReasons = map[int]string{0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 9: "privilegeWithdrawn"}
