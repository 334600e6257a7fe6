// Package errs is the one error type of quorumca's refusals: a stable code
// (the string clients see) and a kind, which the API alone turns into an
// HTTP status. The state machine's verdicts, the authority's policy
// refusals and the cluster's "not now" all use it, so no package needs to
// know another's errors to answer a client.
package errs

import "time"

// Kind is what sort of refusal an error is. The API maps each kind to one
// status; nothing else does.
type Kind uint8

const (
	Internal        Kind = iota // not a refusal: a bug or an unexpected failure
	Invalid                     // the request is malformed or breaks a rule
	Unauthenticated             // no valid credential
	Forbidden                   // the credential does not allow it
	NotFound                    // what the request names does not exist
	Stalled                     // the client stopped sending its request
	Conflict                    // the state does not allow it (used, renewed, changed)
	TooLarge                    // the request is larger than a limit
	RateLimited                 // a limit on requests was reached: ask again later
	Unavailable                 // not now: no leader, a signer down, an upgrade running
)

// Error is a coded refusal. Its code is its identity: errors.Is matches
// any *Error with the same code, so a refusal made from a sentinel with a
// message of its own, or decoded from another node's reply, is still that
// sentinel. Errors that share a code are one error to errors.Is, as they
// are to clients.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// RetryAfter, if set, is when a client may ask again (RateLimited,
	// Unavailable).
	RetryAfter time.Duration
}

// New returns a sentinel error.
func New(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

func (e *Error) Error() string { return e.Message }

// Is matches any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// With is e saying message instead: a refusal that names what exactly was
// refused.
func (e *Error) With(message string) *Error {
	c := *e
	c.Message = message
	return &c
}

// Of returns the innermost *Error in err's chain, or nil. The innermost is
// the most specific: an authority's "unavailable" that wraps a signer's
// overload is answered as the overload.
func Of(err error) *Error {
	var found *Error
	var walk func(error)
	walk = func(err error) {
		for err != nil {
			if e, ok := err.(*Error); ok {
				found = e
			}
			switch u := err.(type) {
			case interface{ Unwrap() error }:
				err = u.Unwrap()
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e)
				}
				return
			default:
				return
			}
		}
	}
	walk(err)
	return found
}
