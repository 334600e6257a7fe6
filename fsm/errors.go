package fsm

import (
	"errors"

	"github.com/quorumca/quorumca/internal/errs"
)

// refusals are the state machine's verdicts by code.
var refusals = map[string]*errs.Error{}

// refusal declares a verdict a command may get.
func refusal(kind errs.Kind, code, msg string) *errs.Error {
	e := errs.New(kind, code, msg)
	refusals[code] = e
	return e
}

func reject(sentinel *errs.Error, msg string) *errs.Error { return sentinel.With(msg) }

// Business rejections, returned by Apply as values. Codes are stable:
// clients and the API depend on them, and they cross the forwarding RPC as
// {code, message}.
var (
	ErrTokenInvalid     = refusal(errs.Unauthenticated, "token_invalid", "token is not valid")
	ErrTokenUsed        = refusal(errs.Conflict, "token_used", "token has already been used")
	ErrTokenExpired     = refusal(errs.Unauthenticated, "token_expired", "token has expired")
	ErrNameNotAllowed   = refusal(errs.Forbidden, "san_not_allowed", "name not allowed")
	ErrTokenRevoked     = refusal(errs.Unauthenticated, "token_revoked", "token has been revoked")
	ErrTokenUnknown     = refusal(errs.NotFound, "token_unknown", "no such token")
	ErrCertUnknown      = refusal(errs.NotFound, "certificate_unknown", "no such certificate")
	ErrCertRevoked      = refusal(errs.Forbidden, "certificate_revoked", "certificate has been revoked")
	ErrCertExpired      = refusal(errs.Forbidden, "certificate_expired", "certificate has expired")
	ErrCertRenewed      = refusal(errs.Conflict, "certificate_renewed", "certificate has already been renewed")
	ErrVersionMismatch  = refusal(errs.Conflict, "version_mismatch", "record changed since it was read")
	ErrProvisioner      = refusal(errs.Invalid, "provisioner_unknown", "unknown provisioner")
	ErrNotFoundAdmin    = refusal(errs.NotFound, "admin_unknown", "no such admin")
	ErrSerialExists     = refusal(errs.Conflict, "serial_exists", "serial number already issued")
	ErrAuthorityUnknown = refusal(errs.Unavailable, "authority_unknown", "unknown authority")
	ErrConflict         = refusal(errs.Conflict, "conflict", "conflicts with existing state")
	// ErrLastAdmin: the change would leave no usable admin (Admin.Usable).
	ErrLastAdmin = refusal(errs.Conflict, "last_admin", "the cluster would be left without a usable admin")
	// ErrAdminInactive: an admin credential that is revoked, expired,
	// superseded by its renewal, or (recovery) used up.
	ErrAdminInactive = refusal(errs.Forbidden, "admin_inactive", "admin credential revoked, expired or used")
	// ErrMalformed: the payload does not decode (a node's bug, or a node
	// that writes garbage); refused alike everywhere.
	ErrMalformed = refusal(errs.Invalid, "malformed_command", "command payload does not decode")
	// ErrUpgrading: the command needs a log format some server of the
	// cluster does not read yet (Envelope.Format); nothing was proposed.
	ErrUpgrading = refusal(errs.Unavailable, "upgrade_in_progress", "a server of the cluster runs an older release that cannot apply this command yet")
)

// IsRefusal reports whether err carries one of the state machine's
// verdicts: the command was refused and left no trace. Errors of the
// cluster (no leader, a timeout) are not: such a command may have been
// applied.
func IsRefusal(err error) bool {
	e := errs.Of(err)
	return e != nil && refusals[e.Code] != nil
}

// Refusal is a verdict decoded from another node's reply. A code this
// binary does not know (a newer node's) is a conflict with the state.
func Refusal(code, message string) *errs.Error {
	kind := errs.Conflict
	if e := refusals[code]; e != nil {
		kind = e.Kind
	}
	return &errs.Error{Kind: kind, Code: code, Message: message}
}

// ErrNotFound is returned by reads for a missing record.
var ErrNotFound = errors.New("not found")
