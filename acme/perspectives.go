package acme

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Multi-perspective validation: with acme { perspectives = N }, a
// challenge passes only when at least N zones see the answer and no zone
// that answered sees anything else: this node and every other server,
// asked over the internal RPC, each with its own resolvers and network
// path. One zone's spoofed DNS or hijacked route cannot pass a challenge,
// nor a spoofed answer go unnoticed. Too few zones answering leaves the
// challenge to be tried again (nothing is committed): the CA cannot tell.

// ValidateRPC is the internal RPC that validates a challenge from another
// node's perspective.
const ValidateRPC = "acme-validate"

// Peers are the other servers, reachable over the internal RPC.
type Peers interface {
	Caller
	OtherServers() []string
}

type validateRequest struct {
	Identifier fsm.ACMEIdentifier `json:"identifier"`
	Type       string             `json:"type"`
	Token      string             `json:"token"`
	KeyAuth    string             `json:"key_auth"`
}

type validateReply struct {
	Zone    string           `json:"zone"`
	Problem *fsm.ACMEProblem `json:"problem,omitempty"`
}

// errTooFewPerspectives: fewer zones than required answered.
var errTooFewPerspectives = errs.New(errs.Unavailable, "acme_perspectives", "the challenge could not be validated from enough zones; try again")

// ServeValidate is the ValidateRPC: validate from this node's perspective.
func (s *Service) ServeValidate(ctx context.Context, body []byte) (any, error) {
	var in validateRequest
	out := validateReply{Zone: s.zone}
	if err := json.Unmarshal(body, &in); err != nil {
		out.Problem = &fsm.ACMEProblem{Type: ProblemPrefix + ProbMalformed, Detail: "acme-validate: " + err.Error()}
		return out, nil
	}
	if err := s.validator.Validate(ctx, in.Identifier, in.Type, in.Token, in.KeyAuth); err != nil {
		p := ProblemOf(err)
		out.Problem = &fsm.ACMEProblem{Type: ProblemPrefix + p.Type, Detail: p.Detail}
	}
	return out, nil
}

// otherPerspectives asks every other server to validate: nil when at
// least n zones in all (this one included) saw the answer and none saw
// anything else; the first other zone's problem; or errTooFewPerspectives.
func (s *Service) otherPerspectives(ctx context.Context, n int, req validateRequest) (*fsm.ACMEProblem, error) {
	if n <= 1 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.validator.cfg.Timeout)
	defer cancel()
	peers := s.peers.OtherServers()
	replies := make([]*validateReply, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			var out validateReply
			if err := s.peers.Call(ctx, p, ValidateRPC, req, &out); err == nil {
				if out.Zone == "" {
					out.Zone = p
				}
				replies[i] = &out
			}
		})
	}
	wg.Wait()
	zones := map[string]bool{s.zone: true}
	for _, r := range replies {
		if r == nil {
			continue // did not answer: counts for nothing
		}
		if r.Problem != nil {
			r.Problem.Detail = "from zone " + r.Zone + ": " + r.Problem.Detail
			return r.Problem, nil
		}
		zones[r.Zone] = true
	}
	if len(zones) < n {
		return nil, fmt.Errorf("%w: %d of %d zones answered", errTooFewPerspectives, len(zones), n)
	}
	return nil, nil
}
