package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Certificate records are stored in a binary layout once the state holds
// an entry of log format 4 or newer (binaryRecordsFormat): about 60% of
// the JSON record's size, since the DER is not base64 and no field is
// named. The serial is the record's key and is not stored again, nor is
// a subject that is "CN=" and the first name. Records written as JSON
// before stay, and any record is read either way. A binary of log format 3
// never meets a binary record: it refuses a state that holds format 4
// (Open, Restore), and the leader writes format-4 entries only once every
// server reads them. The layout is appendCert's, the payloads' codec, and
// the fields Apply alone sets: one schema, which
// TestBinaryPayloadsCarryEveryField and TestRecordsRoundTripEveryField
// check field by field.

const (
	recordMarker        = 0x02 // a JSON record starts with '{'
	recordVersion       = 1
	binaryRecordsFormat = 4

	recordSubjectIsFirstName = 1 << 0 // Subject is "CN=" + SANs[0]
)

// binaryRecords says whether this entry writes certificate records in the
// binary layout: whether the state holds, or this batch has applied up to
// this entry, an entry of binaryRecordsFormat or newer. It depends on the
// entries before and including this one, not on how they were batched.
func (a *applyCtx) binaryRecords() bool {
	return max(a.f.logFormat.Load(), a.bt.format) >= binaryRecordsFormat
}

// putRecord stores c's record, in the layout the state is at.
func putRecord(a *applyCtx, c *Cert) {
	if a.binaryRecords() {
		put(a.tx, bCerts, []byte(c.Serial), encodeRecord(a, c))
		return
	}
	putJSON(a.tx, bCerts, []byte(c.Serial), c)
}

// encodeRecord is c's record in the binary layout: flags, appendCert's
// fields but the serial (the key) and the DER, the fields Apply sets, and
// the DER (record_dict.go).
func encodeRecord(a *applyCtx, c *Cert) []byte {
	out := make([]byte, 0, 160+len(c.DER))
	var flags byte
	rec := *c
	rec.Serial, rec.DER = "", nil
	if len(c.SANs) > 0 && c.Subject == "CN="+c.SANs[0] {
		flags |= recordSubjectIsFirstName
		rec.Subject = ""
	}
	out = append(out, recordMarker, recordVersion, flags)
	out = appendCert(out, &rec)
	out = appendString(out, c.RenewedBy)
	out = appendString(out, c.Lineage)
	return appendRecordDER(a, out, c)
}

// decodeRecord reads a record stored under serial, in either layout.
func (f *FSM) decodeRecord(tx *bolt.Tx, serial, v []byte, c *Cert) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, c)
	}
	if len(v) < 3 || v[0] != recordMarker || v[1] != recordVersion {
		return errors.New("not a certificate record")
	}
	flags := v[2]
	if flags&^recordSubjectIsFirstName != 0 {
		return errors.New("unknown record flags")
	}
	r := reader{b: v[3:]}
	*c = Cert{}
	readCert(&r, c)
	c.RenewedBy = r.string()
	c.Lineage = r.string()
	f.readRecordDER(tx, &r, c)
	if err := r.end(); err != nil {
		return err
	}
	c.Serial = string(serial)
	if flags&recordSubjectIsFirstName != 0 {
		if len(c.SANs) == 0 {
			return errors.New("record names its subject after a first name it lacks")
		}
		c.Subject = "CN=" + c.SANs[0]
	}
	return nil
}

// getCert reads the record of serial in tx.
func (f *FSM) getCert(tx *bolt.Tx, serial string, c *Cert) error {
	v := tx.Bucket(bCerts).Get([]byte(serial))
	if v == nil {
		return ErrNotFound
	}
	if err := f.decodeRecord(tx, []byte(serial), v, c); err != nil {
		return fmt.Errorf("fsm: corrupt record in %s: %w", bCerts, err)
	}
	return nil
}

func init() {
	register(CmdLogFormat, "log_format", 1, applyLogFormat)
	needsFormat(CmdLogFormat, 1, binaryRecordsFormat)
}

// LogFormatMark records in the state that the cluster writes Format: the
// leader proposes it once every server reads a format that changes how
// the state is stored (binary records, from 4), so the change starts at
// one entry of the log on every node.
type LogFormatMark struct {
	Format int `json:"format"`
}

func applyLogFormat(a *applyCtx) error {
	var in LogFormatMark
	a.decode(&in)
	a.notef("format=%d", in.Format)
	// The state holds the format marked, not only the newest format the
	// mark's own entry needs: the leader stops marking once it sees it.
	a.bt.format = max(a.bt.format, int64(min(in.Format, LogFormat)))
	return nil
}

// RecordBuckets are the buckets that hold certificate records and their
// index entries: what a record costs on disk.
var RecordBuckets = []string{"certs", "certs_by_expiry", "certs_by_san", "certs_by_provisioner", "certs_by_property"}

// BucketBytes is the space each bucket's pages take in the file (bolt's
// page allocation: leaves and branches, used or not), by name. It walks
// every page: for measurements, not for a request path.
func (f *FSM) BucketBytes() map[string]int64 {
	out := map[string]int64{}
	_ = f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			out[string(name)] = int64(st.LeafAlloc + st.BranchAlloc)
			return nil
		})
	})
	return out
}

// FreeBytes is the space in the database file that bolt holds free for
// reuse, and the file's size: a state whose file stops growing while
// records come and go reuses its free pages.
func (f *FSM) FreeBytes() (free, file int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.db.Stats()
	free = int64(st.FreeAlloc)
	if fi, err := os.Stat(f.db.Path()); err == nil {
		file = fi.Size()
	}
	return free, file
}
