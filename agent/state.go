package agent

import (
	"encoding/json"
	"os"
	"time"

	"github.com/quorumca/quorumca/internal/atomicfile"
)

// Agent statuses.
const (
	StatusEnrolling = "enrolling" // no certificate yet
	StatusOK        = "ok"        // a valid certificate, next renewal scheduled
	StatusRetrying  = "retrying"  // the last attempt failed; backing off
	StatusStopped   = "stopped"   // the CA refused for good (revoked, expired, bad token)
)

// State is what `quorumca agent status` shows; the agent rewrites it after
// every attempt.
type State struct {
	Status    string    `json:"status"`
	Serial    string    `json:"serial,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Names     []string  `json:"names,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Obtained  time.Time `json:"obtained,omitzero"` // when this agent received the certificate
	RenewAt   time.Time `json:"renew_at,omitzero"` // in the CA's window, else two thirds of its life, jittered
	// RenewWindow is the renewal window the CA last suggested for the
	// certificate in place (RFC 9773); RenewAt lies in it.
	RenewWindowStart time.Time `json:"renew_window_start,omitzero"`
	RenewWindowEnd   time.Time `json:"renew_window_end,omitzero"`
	LastAttempt      time.Time `json:"last_attempt,omitzero"` // the last enrollment or renewal request
	LastResult       string    `json:"last_result,omitempty"` // its outcome
	// LastError is the error of the last check, when it failed, at
	// LastErrorAt; a check that succeeds clears both.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Failures    int       `json:"consecutive_failures,omitempty"`
	Renewals    int       `json:"renewals"`
	RootsCheck  time.Time `json:"roots_checked,omitzero"`
	// Revocation is what OCSP last said of the certificate in place
	// (RevocationGood, ...), asked at RevocationChecked.
	Revocation        string    `json:"revocation,omitempty"`
	RevocationChecked time.Time `json:"revocation_checked,omitzero"`
	// HookPending: -exec or -pid-file has not yet succeeded for the
	// certificate in place; every check runs it again until it does.
	HookPending bool   `json:"hook_pending,omitempty"`
	Reason      string `json:"stopped_reason,omitempty"`
}

// ReadState reads a state file.
func ReadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *State) write(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// Informational: after a power cut the agent reads its certificate
	// again, so the state may lag a step without fsyncs.
	return atomicfile.WriteNoSync(path, append(data, '\n'), 0o644)
}
