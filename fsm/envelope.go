package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CmdType identifies a command in the replicated log. Values are part of the
// on-disk format: never reuse or renumber one. A retired type stays registered
// as a no-op so old logs still replay.
type CmdType uint16

const (
	CmdAuthorityPut     CmdType = 1
	CmdNodeUpsert       CmdType = 2
	CmdAdminCreate      CmdType = 3
	CmdTokenCreate      CmdType = 4
	CmdIssue            CmdType = 5
	CmdTokenPrune       CmdType = 6
	CmdProvisionerPut   CmdType = 7
	CmdTokenRevoke      CmdType = 8
	CmdRevoke           CmdType = 9
	CmdCRLPut           CmdType = 10
	CmdIssuerAdd        CmdType = 11
	CmdProvisionerDel   CmdType = 12
	CmdAdminRevoke      CmdType = 13
	CmdAdminWithdraw    CmdType = 14
	CmdAdminRenew       CmdType = 15
	CmdRenew            CmdType = 16
	CmdRevokeDeferCRL   CmdType = 17
	CmdOCSPResponderPut CmdType = 18
	CmdOCSPResponderDel CmdType = 19
	CmdNodeRemove       CmdType = 25
	CmdAuthorityUpdate  CmdType = 26
	CmdIssuerRevoke     CmdType = 27
	CmdRootCRLPut       CmdType = 28
	CmdCertPrune        CmdType = 29
	CmdAuditCut         CmdType = 30
	CmdLogFormat        CmdType = 31
	// ACME (apply_acme.go), log format 6.
	CmdACMEAccountNew    CmdType = 32
	CmdACMEAccountUpdate CmdType = 33
	CmdACMEOrderNew      CmdType = 34
	CmdACMEChallenge     CmdType = 35
	CmdACMEFinalize      CmdType = 36
	CmdACMEEABPut        CmdType = 37
	CmdACMEPrune         CmdType = 38

	CmdDevicesPut   CmdType = 39
	CmdDeviceRevoke CmdType = 40
)

// Envelope is one log entry. The proposing node fills Type, Version, ID and
// Payload; the leader stamps Time just before proposing so that every node
// applies the entry against the same clock reading.
type Envelope struct {
	Type    CmdType         `json:"t"`
	Version uint16          `json:"v"`
	Time    int64           `json:"ts"` // unix nanoseconds, leader's clock
	ID      string          `json:"id,omitempty"`
	Origin  *Origin         `json:"o,omitempty"`
	Payload json.RawMessage `json:"p"`
}

// Origin says who asked for a command and from where, for the audit log:
// an admin ("admin:ops/3f2a"), a provisioner and token ("provisioner:fleet
// token:9c1d"), a certificate ("cert:5e0a"), or the system ("node:n1").
type Origin struct {
	Actor  string `json:"actor"`
	Remote string `json:"remote,omitempty"` // client address as the receiving node saw it
}

// NewEnvelope encodes payload as the current version of command t.
func NewEnvelope(t CmdType, id string, payload any) (*Envelope, error) {
	h, ok := handlers[t]
	if !ok {
		return nil, fmt.Errorf("fsm: unknown command type %d", t)
	}
	var b []byte
	if p, ok := payload.(binaryPayload); ok {
		b = p.appendPayload(nil)
	} else {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			return nil, fmt.Errorf("fsm: encode %s: %w", h.name, err)
		}
	}
	v := h.version
	if p, ok := payload.(olderVersion); ok {
		v = min(v, p.payloadVersion())
	}
	return &Envelope{Type: t, Version: v, ID: id, Payload: b}, nil
}

// olderVersion is a JSON payload that is written as an older version of its
// command when it uses nothing newer: older binaries apply it alike, so it
// needs no newer log format (needsFormat) during a rolling upgrade.
type olderVersion interface {
	payloadVersion() uint16
}

// binaryPayload is a command whose current version is a binary frame
// instead of JSON (registerBinary).
type binaryPayload interface {
	appendPayload(out []byte) []byte
}

// payloadReader reads a command's binary frame.
type payloadReader interface {
	readPayload(r *reader)
}

// readFrame reads all of b into p.
func readFrame(b []byte, p payloadReader) error {
	r := reader{b: b}
	p.readPayload(&r)
	return r.end()
}

// An envelope is stored in a binary frame: every node decodes every entry
// (and the leader each forwarded one too), and decoding a JSON envelope
// meant scanning its JSON payload twice more before the handler decoded it
// (5% of a three-node cluster's CPU). Layout: envelopeMarker, the format
// version, uvarint type, uvarint version, the time as 8 bytes big-endian,
// the ID (uvarint length, bytes), 0 or 1 for an origin followed by its
// actor and remote (each uvarint length, bytes), then the payload to the
// end. Entries written as JSON (a '{' first) by older binaries still
// decode.
const (
	envelopeMarker  = 0x01
	envelopeVersion = 1
)

// Encode returns the bytes stored in the Raft log.
func (e *Envelope) Encode() ([]byte, error) {
	out := make([]byte, 0, 128+len(e.ID)+len(e.Payload)) // fields and origin fit in 128 as a rule
	out = append(out, envelopeMarker, envelopeVersion)
	out = binary.AppendUvarint(out, uint64(e.Type))
	out = binary.AppendUvarint(out, uint64(e.Version))
	out = binary.BigEndian.AppendUint64(out, uint64(e.Time))
	out = appendString(out, e.ID)
	if e.Origin == nil {
		out = append(out, 0)
	} else {
		out = append(out, 1)
		out = appendString(out, e.Origin.Actor)
		out = appendString(out, e.Origin.Remote)
	}
	return append(out, e.Payload...), nil
}

// LogFormat is the newest log format this binary reads. 0: an entry is one
// JSON envelope with a JSON payload. 1 adds batch entries, binary envelopes
// and binary payloads (issue version 3). 2 adds the commands and versions
// registered with needsFormat(..., 2), 3 those with needsFormat(..., 3)
// (root CRLs, revoked issuers, authority settings), 4 those with
// needsFormat(..., 4) (cert_prune, audit_cut, log_format; certificate records in a binary
// layout once a format-4 entry is applied), 5 server provisioners, 6 ACME
// (accounts, orders, challenges, finalization, EAB keys; acme
// provisioners), 7 SCEP RAs (delegated keys of a role) and EST server
// key generation, 8 x5c provisioners, their devices and issue entries
// for a device. A leader writes the
// lowest format any server of the cluster reads (cluster/), so nodes of two
// releases can share a log during a rolling upgrade.
const LogFormat = 8

// Format is the lowest log format that carries e: a command or version
// that older binaries do not know (they would panic on it) is proposed only
// once every server reads its format. Framing is not counted: EncodeFor
// writes any envelope in any format.
func (e *Envelope) Format() int {
	f := 0
	for _, n := range handlers[e.Type].needs {
		if e.Version >= n.version {
			f = max(f, n.format)
		}
	}
	return f
}

// EncodeFor returns the bytes stored in the Raft log in a format no newer
// than format.
func (e *Envelope) EncodeFor(format int) ([]byte, error) {
	if format >= 1 {
		return e.Encode()
	}
	return e.EncodeJSON()
}

// EncodeJSON returns the envelope in log format 0: JSON, with a binary
// payload turned back into its command's newest JSON version.
func (e *Envelope) EncodeJSON() ([]byte, error) {
	out := *e
	if h := handlers[e.Type]; h.isBinary(e.Version) {
		if h.jsonVersion == 0 {
			// A binary-only command needs log format 2 (needsFormat), so
			// it is never written for a format-0 reader.
			return nil, fmt.Errorf("fsm: %s has no JSON form", h.name)
		}
		p := h.newBinary()
		err := readFrame(e.Payload, p)
		if err == nil {
			out.Payload, err = json.Marshal(p)
		}
		if err != nil {
			return nil, fmt.Errorf("fsm: re-encode %s: %w", h.name, err)
		}
		out.Version = h.jsonVersion
	}
	return json.Marshal(&out)
}

// DecodeEnvelope parses log bytes, binary or JSON. The payload shares b's
// memory.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) > 0 && b[0] == envelopeMarker {
		e, err := decodeBinaryEnvelope(b)
		if err != nil {
			return nil, fmt.Errorf("fsm: decode envelope: %w", err)
		}
		return e, nil
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("fsm: decode envelope: %w", err)
	}
	return &e, nil
}

func decodeBinaryEnvelope(b []byte) (*Envelope, error) {
	if len(b) < 2 {
		return nil, errTruncated
	}
	if b[1] != envelopeVersion {
		return nil, fmt.Errorf("envelope format %d not supported by this binary", b[1])
	}
	r := reader{b: b[2:]}
	var e Envelope
	e.Type = CmdType(r.uvarint16())
	e.Version = r.uvarint16()
	e.Time = int64(r.uint64())
	e.ID = r.string()
	switch r.byte() {
	case 0:
	case 1:
		e.Origin = &Origin{Actor: r.string(), Remote: r.string()}
	default:
		r.fail(errors.New("bad origin flag"))
	}
	if r.err != nil {
		return nil, r.err
	}
	e.Payload = r.b
	return &e, nil
}

// A batch entry carries several envelopes in one log entry: the leader's
// group commit, so one log append and one FSM transaction (each with its
// fsync) serve every command waiting at that moment. An envelope opens with
// envelopeMarker or '{', so the first byte tells them apart. Layout: batchMarker, the
// format version, then per envelope its length (uvarint) and its bytes. The
// same framing carries a follower's forwarded writes to the leader.
const (
	batchMarker  = 0x00
	batchVersion = 1
)

// EncodeBatch frames encoded envelopes as one log entry.
func EncodeBatch(envs [][]byte) []byte {
	n := 2
	for _, e := range envs {
		n += binary.MaxVarintLen32 + len(e)
	}
	out := make([]byte, 0, n)
	out = append(out, batchMarker, batchVersion)
	for _, e := range envs {
		out = binary.AppendUvarint(out, uint64(len(e)))
		out = append(out, e...)
	}
	return out
}

// isBatch reports whether a log entry is a batch.
func isBatch(data []byte) bool { return len(data) > 0 && data[0] == batchMarker }

// SplitBatch returns the envelopes of a batch entry, sharing data's memory.
func SplitBatch(data []byte) ([][]byte, error) {
	if !isBatch(data) || len(data) < 2 {
		return nil, errors.New("fsm: not a batch entry")
	}
	if data[1] != batchVersion {
		return nil, fmt.Errorf("fsm: batch format %d not supported by this binary", data[1])
	}
	var out [][]byte
	for rest := data[2:]; len(rest) > 0; {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n == 0 || n > uint64(len(rest)-w) {
			return nil, errors.New("fsm: truncated batch entry")
		}
		out = append(out, rest[w:w+int(n)])
		rest = rest[w+int(n):]
	}
	if len(out) == 0 {
		return nil, errors.New("fsm: empty batch entry")
	}
	return out, nil
}

// CommandName is the name of a command type, for logs and metrics.
func CommandName(t CmdType) string {
	if h, ok := handlers[t]; ok {
		return h.name
	}
	return fmt.Sprintf("unknown_%d", t)
}

// applyCtx is what a handler may look at: the transaction, the log index and
// the leader's timestamp. Nothing else (no clock, no randomness, no I/O).
type applyCtx struct {
	f     *FSM
	tx    *bolt.Tx
	bt    *batchTx
	index uint64
	now   time.Time
	env   *Envelope
	note  string // what the command did, for its audit entry
}

// batchTx is what the commands of one bolt transaction share: the audit
// chain's head, read once and written once per transaction instead of per
// command.
type batchTx struct {
	f      *FSM
	tx     *bolt.Tx
	head   *AuditEntry // nil until the first audited command
	format int64       // the newest log format among the entries applied
	// provisioners: a provisioner was written (FSM.provisionersGen).
	provisioners bool
}

// notef sets the audit note.
func (a *applyCtx) notef(format string, args ...any) { a.note = fmt.Sprintf(format, args...) }

// decode unmarshals the payload. A version its handler registered as a
// binary frame is read from one. A payload that does not decode leaves
// the handler (handlers decode before they check or write anything) and the
// command is refused as malformed, alike on every node: the leader takes
// envelopes from other nodes, and one bad payload must not stop the
// cluster (every node would fail on it again at every restart).
func (a *applyCtx) decode(v any) {
	var err error
	if p, ok := v.(payloadReader); ok && handlers[a.env.Type].isBinary(a.env.Version) {
		err = readFrame(a.env.Payload, p)
	} else {
		err = json.Unmarshal(a.env.Payload, v)
	}
	if err != nil {
		panic(malformed{fmt.Errorf("index %d: undecodable %s payload: %v", a.index, CommandName(a.env.Type), err)})
	}
}

// malformed is decode's way out of a handler.
type malformed struct{ err error }

// run applies h, turning an undecodable payload into a refusal.
func (h handler) run(a *applyCtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			m, ok := r.(malformed)
			if !ok {
				panic(r)
			}
			err = reject(ErrMalformed, m.err.Error())
		}
	}()
	return h.fn(a)
}

// CheckProposal refuses an envelope no node could apply: an unknown command,
// or a version this binary does not know (older binaries are kept out by
// the log format gate). Such an entry would stop every node that applies
// it, so the leader checks each envelope before proposing it.
func CheckProposal(e *Envelope) error {
	h, ok := handlers[e.Type]
	if !ok || e.Version == 0 || e.Version > h.version {
		return fmt.Errorf("fsm: command %d version %d is not known", e.Type, e.Version)
	}
	return nil
}

type handlerFunc func(a *applyCtx) error

type handler struct {
	name    string
	version uint16 // newest payload version this binary writes and reads
	fn      handlerFunc
	// For a command whose newest version is a binary frame: its newest
	// JSON version, and a new payload to read a frame into.
	jsonVersion uint16
	newBinary   func() payloadReader
	// needs: from which payload version on the command needs which log
	// format (Envelope.Format).
	needs []formatNeed
}

type formatNeed struct {
	version uint16
	format  int
}

// isBinary reports whether version of the command is a binary frame.
func (h handler) isBinary(version uint16) bool { return h.newBinary != nil && version > h.jsonVersion }

var handlers = map[CmdType]handler{}

// register adds a command handler; called from init in the apply_*.go files.
func register(t CmdType, name string, version uint16, fn handlerFunc) {
	if _, dup := handlers[t]; dup {
		panic(fmt.Sprintf("fsm: command type %d registered twice", t))
	}
	handlers[t] = handler{name: name, version: version, fn: fn}
}

// needsFormat says that versions of command t from version on may only be
// proposed once every server reads log format: older binaries panic on
// them. A new command type needs it from version 1.
func needsFormat(t CmdType, version uint16, format int) {
	h, ok := handlers[t]
	if !ok || format > LogFormat {
		panic(fmt.Sprintf("fsm: needsFormat(%d, %d, %d): unknown command or format", t, version, format))
	}
	h.needs = append(h.needs, formatNeed{version, format})
	handlers[t] = h
}

// registerBinary marks command t's versions above jsonVersion as binary
// frames, read into what newPayload returns (decode, EncodeJSON).
func registerBinary(t CmdType, jsonVersion uint16, newPayload func() payloadReader) {
	h := handlers[t]
	h.jsonVersion, h.newBinary = jsonVersion, newPayload
	handlers[t] = h
}
