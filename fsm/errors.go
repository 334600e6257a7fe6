package fsm

import "errors"

// Error is a business rejection returned by Apply as a value. It crosses the
// forwarding RPC as {code, message}, so it is compared by Code, not identity.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is matches any *Error with the same code, so errors.Is works on errors that
// were decoded from another node's reply.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

func reject(sentinel *Error, msg string) *Error {
	return &Error{Code: sentinel.Code, Message: msg}
}

// Business rejections. Codes are stable: clients and the API depend on them.
var (
	ErrTokenInvalid     = &Error{Code: "token_invalid", Message: "token is not valid"}
	ErrTokenUsed        = &Error{Code: "token_used", Message: "token has already been used"}
	ErrTokenExpired     = &Error{Code: "token_expired", Message: "token has expired"}
	ErrNameNotAllowed   = &Error{Code: "san_not_allowed", Message: "name not allowed"}
	ErrTokenRevoked     = &Error{Code: "token_revoked", Message: "token has been revoked"}
	ErrTokenUnknown     = &Error{Code: "token_unknown", Message: "no such token"}
	ErrCertUnknown      = &Error{Code: "certificate_unknown", Message: "no such certificate"}
	ErrCertRevoked      = &Error{Code: "certificate_revoked", Message: "certificate has been revoked"}
	ErrCertExpired      = &Error{Code: "certificate_expired", Message: "certificate has expired"}
	ErrCertRenewed      = &Error{Code: "certificate_renewed", Message: "certificate has already been renewed"}
	ErrVersionMismatch  = &Error{Code: "version_mismatch", Message: "record changed since it was read"}
	ErrProvisioner      = &Error{Code: "provisioner_unknown", Message: "unknown provisioner"}
	ErrNotFoundAdmin    = &Error{Code: "admin_unknown", Message: "no such admin"}
	ErrSerialExists     = &Error{Code: "serial_exists", Message: "serial number already issued"}
	ErrAuthorityUnknown = &Error{Code: "authority_unknown", Message: "unknown authority"}
	ErrConflict         = &Error{Code: "conflict", Message: "conflicts with existing state"}
	// ErrLastAdmin: the change would leave no usable admin (Admin.Usable).
	ErrLastAdmin = &Error{Code: "last_admin", Message: "the cluster would be left without a usable admin"}
	// ErrAdminInactive: an admin credential that is revoked, expired,
	// superseded by its renewal, or (recovery) used up.
	ErrAdminInactive = &Error{Code: "admin_inactive", Message: "admin credential revoked, expired or used"}
	// ErrMalformed: the payload does not decode (a node's bug, or a node
	// that writes garbage); refused alike everywhere.
	ErrMalformed = &Error{Code: "malformed_command", Message: "command payload does not decode"}
	// ErrUpgrading: the command needs a log format some server of the
	// cluster does not read yet (Envelope.Format); nothing was proposed.
	ErrUpgrading = &Error{Code: "upgrade_in_progress", Message: "a server of the cluster runs an older release that cannot apply this command yet"}
)

// ErrNotFound is returned by reads for a missing record.
var ErrNotFound = errors.New("not found")
