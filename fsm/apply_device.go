package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quorumca/quorumca/internal/errs"
)

// Devices of x5c provisioners: the allow-list an admin uploads, and what
// each device enrolled for. A device is keyed by its provisioner and the ID
// its factory certificate names; the record is what makes "once per device"
// and "listed devices only" hold cluster-wide, decided here, in the entry
// that stores the certificate.

func init() {
	register(CmdDevicesPut, "devices_put", 1, applyDevicesPut)
	needsFormat(CmdDevicesPut, 1, 8)
	register(CmdDeviceRevoke, "device_revoke", 1, applyDeviceRevoke)
	needsFormat(CmdDeviceRevoke, 1, 8)
}

var bDevices = []byte("devices") // provisioner \x00 device ID -> Device

// Refusals of device enrollment.
var (
	ErrDeviceEnrolled  = refusal(errs.Conflict, "device_enrolled", "the device has enrolled already")
	ErrDeviceNotListed = refusal(errs.Forbidden, "device_not_listed", "the device is not on the provisioner's allow-list")
	ErrDeviceRevoked   = refusal(errs.Forbidden, "device_revoked", "the device's entry has been revoked")
	ErrDeviceUnknown   = refusal(errs.NotFound, "device_unknown", "no such device")
)

// MaxDeviceIDLen bounds a device ID; DeviceIDValid says which IDs there are.
const MaxDeviceIDLen = 64

// DeviceIDValid: 1-64 letters, digits, '-', '_' and ':', so that an ID put
// into a name template cannot add a label, a path or a wildcard.
func DeviceIDValid(id string) bool {
	if id == "" || len(id) > MaxDeviceIDLen {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == ':':
		default:
			return false
		}
	}
	return true
}

// Device is one device of an x5c provisioner.
type Device struct {
	Provisioner string `json:"provisioner"`
	ID          string `json:"id"`
	// Attribute: what the ID is of the factory certificate ("serial",
	// "cn"), the provisioner's device_id when the entry was made: a
	// provisioner under the name never keys its devices otherwise.
	Attribute string    `json:"attribute,omitempty"`
	Listed    bool      `json:"listed,omitempty"` // on the allow-list
	ListedAt  time.Time `json:"listed_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Serial is the last certificate the device enrolled for, EnrolledAt
	// when, Enrollments how many it has had (more than one only where the
	// provisioner allows re-provisioning).
	Serial      string    `json:"serial,omitempty"`
	EnrolledAt  time.Time `json:"enrolled_at,omitzero"`
	Enrollments int       `json:"enrollments,omitempty"`
}

// Revoked reports whether the entry was revoked.
func (d *Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// deviceKey: IDs are case-insensitive (names made from them are DNS names,
// which are), so "SN1" and "sn1" are one device, kept as "sn1".
func deviceKey(provisioner, id string) []byte { return indexKey(provisioner, strings.ToLower(id)) }

// DevicesPut lists devices on an x5c provisioner's allow-list, all or none:
// a revoked entry cannot be listed again (its factory identity is not to
// be trusted), and listing a listed device changes nothing.
type DevicesPut struct {
	Provisioner string   `json:"provisioner"`
	IDs         []string `json:"ids"`
}

// DeviceRevoke revokes a device's entry: it enrolls no more, listed or not,
// and its certificates of the provisioner renew no more. A device not seen
// yet gets a revoked entry, so a leaked factory key is refused before use.
type DeviceRevoke struct {
	Provisioner string `json:"provisioner"`
	ID          string `json:"id"`
}

// deviceEntry is id's entry under provisioner p, or a new one.
func deviceEntry(a *applyCtx, p *Provisioner, id string) Device {
	var d Device
	if getJSON(a.tx, bDevices, deviceKey(p.Name, id), &d) != nil {
		d = Device{Provisioner: p.Name, ID: strings.ToLower(id), Attribute: deviceAttribute(p)}
	}
	return d
}

// x5cProvisioner reads the named x5c provisioner in an apply.
func x5cProvisioner(a *applyCtx, name string) (*Provisioner, error) {
	p, err := a.f.provisioners.get(a.tx, bProvisioners, name)
	if err != nil || p.Kind != KindX5C || p.X5C == nil {
		return nil, reject(ErrProvisioner, "no x5c provisioner named "+name)
	}
	return p, nil
}

func applyDevicesPut(a *applyCtx) error {
	var in DevicesPut
	a.decode(&in)
	a.notef("provisioner=%s devices=%d", in.Provisioner, len(in.IDs))
	p, err := x5cProvisioner(a, in.Provisioner)
	if err != nil {
		return err
	}
	recs := make([]Device, len(in.IDs))
	seen := make(map[string]bool, len(in.IDs))
	for i, id := range in.IDs {
		if seen[strings.ToLower(id)] {
			return reject(ErrConflict, fmt.Sprintf("device ID %.80q is named twice", id))
		}
		seen[strings.ToLower(id)] = true
		if !DeviceIDValid(id) {
			return reject(ErrConflict, fmt.Sprintf("device ID %.80q is not valid", id))
		}
		recs[i] = deviceEntry(a, p, id)
		if recs[i].Revoked() {
			return reject(ErrDeviceRevoked, "device "+id+" was revoked; it cannot be listed again")
		}
	}
	for i := range recs {
		d := &recs[i]
		if d.Listed {
			continue
		}
		d.Listed, d.ListedAt = true, a.now
		putJSON(a.tx, bDevices, deviceKey(d.Provisioner, d.ID), d)
	}
	return nil
}

func applyDeviceRevoke(a *applyCtx) error {
	var in DeviceRevoke
	a.decode(&in)
	a.notef("provisioner=%s device=%s", in.Provisioner, in.ID)
	p, err := x5cProvisioner(a, in.Provisioner)
	if err != nil {
		return err
	}
	if !DeviceIDValid(in.ID) {
		return reject(ErrDeviceUnknown, fmt.Sprintf("device ID %.80q is not valid", in.ID))
	}
	d := deviceEntry(a, p, in.ID)
	if d.Revoked() {
		return nil
	}
	d.RevokedAt = a.now
	putJSON(a.tx, bDevices, deviceKey(in.Provisioner, in.ID), &d)
	return nil
}

// checkDevice decides whether device id of the certificate's provisioner
// may enroll now, and returns its record as the enrollment leaves it.
func checkDevice(a *applyCtx, id string, version uint64, created time.Time, c *Cert) (*Device, error) {
	p, err := x5cProvisioner(a, c.Provisioner)
	if err != nil {
		return nil, err
	}
	if p.Version != version || !p.CreatedAt.Equal(created) {
		// Signed under another version of the provisioner (its roots,
		// names or device_id), or under one deleted since: the proposer
		// signs again.
		return nil, reject(ErrVersionMismatch, fmt.Sprintf("provisioner %s is at version %d of %s, not %d of %s",
			p.Name, p.Version, p.CreatedAt.Format(time.RFC3339Nano), version, created.Format(time.RFC3339Nano)))
	}
	if !DeviceIDValid(id) {
		return nil, reject(ErrDeviceNotListed, fmt.Sprintf("device ID %.80q is not valid", id))
	}
	d := deviceEntry(a, p, id)
	switch {
	case d.Revoked():
		return nil, reject(ErrDeviceRevoked, "device "+id+" has been revoked")
	case p.X5C.AllowList && !d.Listed:
		return nil, reject(ErrDeviceNotListed, "device "+id+" is not on the allow-list of provisioner "+c.Provisioner)
	case d.Serial != "" && !p.X5C.Reprovision:
		return nil, reject(ErrDeviceEnrolled, "device "+id+" has enrolled already, for certificate "+d.Serial)
	}
	d.Serial, d.EnrolledAt = c.Serial, a.now
	d.Enrollments++
	return &d, nil
}

// checkDeviceRenewal refuses to renew a device's certificate once its entry
// is revoked.
func checkDeviceRenewal(a *applyCtx, old *Cert) error {
	id := old.Properties[DeviceProperty]
	if id == "" {
		return nil
	}
	// A revoked entry outlives its provisioner (devicesDelete): a
	// provisioner made again under the name does not revive the device.
	var d Device
	if getJSON(a.tx, bDevices, deviceKey(old.Provisioner, id), &d) == nil && d.Revoked() {
		return reject(ErrDeviceRevoked, "device "+id+" has been revoked")
	}
	// A device's certificate renews under the provisioner that enrolled
	// it, never under one made again under its name (other roots, another
	// allow-list): the device enrolls there, or not at all.
	if p, err := a.f.provisioners.get(a.tx, bProvisioners, old.Provisioner); err == nil && p.CreatedAt.After(old.IssuedAt) {
		return reject(ErrCertUnknown, "certificate "+old.Serial+" was issued by an earlier provisioner named "+old.Provisioner)
	}
	return nil
}

// templateKey is an x5c name template as the names it makes: lowercase,
// any spelling of the device ID's placeholder as {id}.
func templateKey(t string) string {
	t = strings.ToLower(t)
	for _, p := range []string{"{serial}", "{cn}"} {
		t = strings.ReplaceAll(t, p, "{id}")
	}
	return t
}

// sharedTemplate names another x5c provisioner that makes a name p's
// templates make too ("" if none): device IDs are each provisioner's own,
// so two devices would share the name.
func sharedTemplate(a *applyCtx, p *Provisioner) string {
	if p.Kind != KindX5C || p.X5C == nil {
		return ""
	}
	mine := map[string]bool{}
	for _, t := range p.X5C.Names {
		mine[templateKey(t)] = true
	}
	c := a.tx.Bucket(bProvisioners).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var o Provisioner
		if string(k) == p.Name || json.Unmarshal(v, &o) != nil || o.Kind != KindX5C || o.X5C == nil {
			continue
		}
		for _, t := range o.X5C.Names {
			if mine[templateKey(t)] {
				return o.Name
			}
		}
	}
	return ""
}

// DeviceProperty is the certificate property that names the device an x5c
// enrollment was for (searchable like any property).
const DeviceProperty = "device_id"

// devicesDelete drops a deleted provisioner's device entries but the
// revoked ones: a revocation is for good, whatever becomes of the
// provisioner's name.
func devicesDelete(a *applyCtx, provisioner string) {
	prefix := indexKey(provisioner, "")
	var drop [][]byte
	c := a.tx.Bucket(bDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var d Device
		if json.Unmarshal(v, &d) == nil && d.Revoked() {
			continue
		}
		drop = append(drop, bytes.Clone(k))
	}
	for _, k := range drop {
		del(a.tx, bDevices, k)
	}
}

// devicesAttribute is the attribute a name's device entries are keyed by,
// and whether there are any.
func devicesAttribute(a *applyCtx, provisioner string) (string, bool) {
	prefix := indexKey(provisioner, "")
	k, v := a.tx.Bucket(bDevices).Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return "", false
	}
	var d Device
	_ = json.Unmarshal(v, &d)
	return d.Attribute, true
}

// Device returns one device of a provisioner.
func (f *FSM) Device(provisioner, id string) (*Device, error) {
	return get[Device](f, bDevices, deviceKey(provisioner, id))
}

// Devices lists a provisioner's devices in ID order: those whose ID starts
// with prefix, after the ID after ("" from the start), up to limit.
func (f *FSM) Devices(provisioner, prefix, after string, limit int) ([]*Device, error) {
	var out []*Device
	err := f.view(func(tx *bolt.Tx) error {
		base := deviceKey(provisioner, prefix)
		c := tx.Bucket(bDevices).Cursor()
		k, v := c.Seek(base)
		if ak := deviceKey(provisioner, after); after != "" && bytes.Compare(ak, base) > 0 {
			k, v = c.Seek(ak)
			if k != nil && bytes.Equal(k, ak) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, base) && len(out) < limit; k, v = c.Next() {
			d := new(Device)
			if err := json.Unmarshal(v, d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}
