package acme

import (
	"errors"
	"fmt"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// ACME error types (RFC 8555 section 6.7), without their
// "urn:ietf:params:acme:error:" prefix.
const (
	ProbAccountDoesNotExist     = "accountDoesNotExist"
	ProbAlreadyRevoked          = "alreadyRevoked"
	ProbAlreadyReplaced         = "alreadyReplaced" // RFC 9773
	ProbBadCSR                  = "badCSR"
	ProbBadNonce                = "badNonce"
	ProbBadPublicKey            = "badPublicKey"
	ProbBadRevocationReason     = "badRevocationReason"
	ProbBadSignatureAlgorithm   = "badSignatureAlgorithm"
	ProbConnection              = "connection"
	ProbDNS                     = "dns"
	ProbExternalAccountRequired = "externalAccountRequired"
	ProbIncorrectResponse       = "incorrectResponse"
	ProbMalformed               = "malformed"
	ProbOrderNotReady           = "orderNotReady"
	ProbRateLimited             = "rateLimited"
	ProbRejectedIdentifier      = "rejectedIdentifier"
	ProbServerInternal          = "serverInternal"
	ProbTLS                     = "tls"
	ProbUnauthorized            = "unauthorized"
	ProbUnsupportedIdentifier   = "unsupportedIdentifier"
)

// ProblemPrefix is the namespace of ACME's error types.
const ProblemPrefix = "urn:ietf:params:acme:error:"

// Problem is a refusal in ACME's terms: its type, and the kind of refusal
// (errs.Kind) from which the API picks the status. Code is quorumca's own
// error code for the same refusal, which the reply carries too.
type Problem struct {
	Type   string // without ProblemPrefix
	Detail string
	Kind   errs.Kind
	Code   string
}

func (p *Problem) Error() string { return p.Type + ": " + p.Detail }

func problem(kind errs.Kind, typ, format string, args ...any) *Problem {
	return &Problem{Type: typ, Detail: fmt.Sprintf(format, args...), Kind: kind, Code: "acme_" + typ}
}

func malformed(format string, args ...any) *Problem {
	return problem(errs.Invalid, ProbMalformed, format, args...)
}

func unauthorized(format string, args ...any) *Problem {
	return problem(errs.Forbidden, ProbUnauthorized, format, args...)
}

// ProblemOf turns any error into a problem: a refusal of the authority or
// the state machine keeps its kind and code and gets the ACME type that
// says the same; anything else is the server's failure.
func ProblemOf(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	e := errs.Of(err)
	if e == nil || e.Kind == errs.Internal {
		return &Problem{Type: ProbServerInternal, Detail: "internal error", Kind: errs.Internal, Code: "internal"}
	}
	typ := ProbMalformed
	switch {
	case errors.Is(err, fsm.ErrNameNotAllowed), errors.Is(err, authority.ErrCNNotAllowed):
		typ = ProbRejectedIdentifier
	case errors.Is(err, authority.ErrACMEIdentifierType):
		typ = ProbUnsupportedIdentifier
	case errors.Is(err, authority.ErrKeyTooWeak), errors.Is(err, authority.ErrKeyTypeNotAllowed):
		typ = ProbBadPublicKey
	case errors.Is(err, authority.ErrBadCSR), errors.Is(err, authority.ErrACMECSRNames):
		typ = ProbBadCSR
	case errors.Is(err, authority.ErrAlreadyRevoked):
		typ = ProbAlreadyRevoked
		return &Problem{Type: typ, Detail: e.Message, Kind: errs.Invalid, Code: e.Code}
	case errors.Is(err, fsm.ErrACMEReplaced):
		return &Problem{Type: ProbAlreadyReplaced, Detail: e.Message, Kind: errs.Conflict, Code: e.Code}
	case errors.Is(err, fsm.ErrACMEFinalized):
		return &Problem{Type: ProbOrderNotReady, Detail: "the order is finalized already", Kind: errs.Forbidden, Code: e.Code}
	case errors.Is(err, fsm.ErrACMEOrderState):
		return &Problem{Type: ProbOrderNotReady, Detail: e.Message, Kind: errs.Forbidden, Code: e.Code}
	case errors.Is(err, fsm.ErrACMEAccount):
		return &Problem{Type: ProbUnauthorized, Detail: e.Message, Kind: errs.Forbidden, Code: e.Code}
	case errors.Is(err, fsm.ErrACMEEAB):
		return &Problem{Type: ProbUnauthorized, Detail: e.Message, Kind: errs.Forbidden, Code: e.Code}
	case e.Kind == errs.RateLimited:
		typ = ProbRateLimited
	case e.Kind == errs.Unavailable:
		typ = ProbServerInternal
	case e.Kind == errs.Unauthenticated, e.Kind == errs.Forbidden:
		typ = ProbUnauthorized
	}
	return &Problem{Type: typ, Detail: e.Message, Kind: e.Kind, Code: e.Code}
}
