package fsm

import (
	"errors"
	"testing"
	"time"
)

func x5cProv(name string, allowList, reprovision bool) Provisioner {
	return Provisioner{Name: name, Kind: KindX5C, Authority: "default",
		X5C: &X5COptions{Roots: "pem", Names: []string{"{serial}." + name + ".devices.example"}, AllowList: allowList, Reprovision: reprovision}}
}

func deviceCert(serial, prov string) Cert {
	c := cert(serial, serial+".devices.example")
	c.Provisioner = prov
	return c
}

// deviceLog adds device commands, refusals included, to a workload.
func deviceLog(add func(CmdType, time.Time, any)) {
	add(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: x5cProv("factory", true, false)})
	add(CmdDevicesPut, t0, DevicesPut{Provisioner: "factory", IDs: []string{"d1", "d2"}})
	add(CmdIssue, t0, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("dv1", "factory")})
	add(CmdIssue, t0, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("dv2", "factory")}) // once: refused
	add(CmdIssue, t0, Issue{Device: "d9", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("dv3", "factory")}) // not listed: refused
	add(CmdDeviceRevoke, t0, DeviceRevoke{Provisioner: "factory", ID: "d2"})
	add(CmdDevicesPut, t0, DevicesPut{Provisioner: "factory", IDs: []string{"d3", "d2"}}) // d2 revoked: refused
}

// A device enrolls once, only when listed where the provisioner has an
// allow-list, never once revoked; its certificate renews until then.
func TestDeviceEnrollsOnce(t *testing.T) {
	f, b := lifecycle(t)
	run := func(typ CmdType, p any) error { t.Helper(); return apply(t, f, b.entry(typ, t0, p)) }
	must := func(typ CmdType, p any) {
		t.Helper()
		if err := run(typ, p); err != nil {
			t.Fatal(err)
		}
	}
	must(CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("listed", true, false)})
	must(CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("open", false, false)})
	must(CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("again", false, true)})

	if err := run(CmdIssue, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("a1", "listed")}); !errors.Is(err, ErrDeviceNotListed) {
		t.Fatalf("unlisted device: %v", err)
	}
	if err := run(CmdDevicesPut, DevicesPut{Provisioner: "p", IDs: []string{"d1"}}); !errors.Is(err, ErrProvisioner) {
		t.Fatalf("devices of a token provisioner: %v", err)
	}
	if err := run(CmdDevicesPut, DevicesPut{Provisioner: "listed", IDs: []string{"d1", "a.b"}}); err == nil {
		t.Fatal("an ID with a dot was listed")
	}
	if d, err := f.Device("listed", "d1"); err == nil {
		t.Fatalf("a refused put left %+v", d)
	}
	must(CmdDevicesPut, DevicesPut{Provisioner: "listed", IDs: []string{"d1", "d2"}})
	if err := run(CmdIssue, Issue{Device: "d1", ProvisionerVersion: 2, ProvisionerCreated: t0, Cert: deviceCert("a0", "listed")}); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("verified against another version of the provisioner: %v", err)
	}
	must(CmdIssue, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("a1", "listed")})
	if err := run(CmdIssue, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("a2", "listed")}); !errors.Is(err, ErrDeviceEnrolled) {
		t.Fatalf("second enrollment: %v", err)
	}
	c, err := f.Cert("a1")
	if err != nil || c.Properties[DeviceProperty] != "d1" {
		t.Fatalf("record %+v %v", c, err)
	}
	d, _ := f.Device("listed", "d1")
	if d.Serial != "a1" || d.Enrollments != 1 || !d.Listed {
		t.Fatalf("device %+v", d)
	}

	// Without an allow-list any device enrolls, once; with reprovisioning,
	// again.
	must(CmdIssue, Issue{Device: "x", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("o1", "open")})
	if err := run(CmdIssue, Issue{Device: "x", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("o2", "open")}); !errors.Is(err, ErrDeviceEnrolled) {
		t.Fatalf("second enrollment without allow-list: %v", err)
	}
	must(CmdIssue, Issue{Device: "x", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("r1", "again")})
	must(CmdIssue, Issue{Device: "x", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("r2", "again")})
	if d, _ := f.Device("again", "x"); d.Serial != "r2" || d.Enrollments != 2 {
		t.Fatalf("reprovisioned device %+v", d)
	}

	// A renewal keeps working until the entry is revoked.
	renew := func(old, serial string) error {
		c := deviceCert(serial, "listed")
		c.SANs, c.Subject = []string{"a1.devices.example"}, "CN=a1.devices.example"
		return run(CmdRenew, Renew{Renews: old, Cert: c})
	}
	if err := renew("a1", "a3"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	must(CmdDeviceRevoke, DeviceRevoke{Provisioner: "listed", ID: "d1"})
	if err := renew("a3", "a4"); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("renewal after the device's revocation: %v", err)
	}
	if err := run(CmdDevicesPut, DevicesPut{Provisioner: "listed", IDs: []string{"d1"}}); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("listing a revoked device again: %v", err)
	}
	// A device revoked before it was ever seen never enrolls.
	must(CmdDeviceRevoke, DeviceRevoke{Provisioner: "open", ID: "leaked"})
	if err := run(CmdIssue, Issue{Device: "leaked", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("l1", "open")}); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("a revoked, never seen device: %v", err)
	}

	// IDs are case-insensitive: names made from them are DNS names.
	if err := run(CmdIssue, Issue{Device: "X", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("o3", "open")}); !errors.Is(err, ErrDeviceEnrolled) {
		t.Fatalf("X after x: %v", err)
	}
	if err := run(CmdDevicesPut, DevicesPut{Provisioner: "listed", IDs: []string{"q1", "Q1"}}); err == nil {
		t.Fatal("one ID twice in a put")
	}

	ds, err := f.Devices("listed", "", "", 10)
	if err != nil || len(ds) != 2 || ds[0].ID != "d1" || ds[1].ID != "d2" {
		t.Fatalf("devices %+v %v", ds, err)
	}
	if ds, _ := f.Devices("listed", "", "d1", 10); len(ds) != 1 || ds[0].ID != "d2" {
		t.Fatalf("devices after d1: %+v", ds)
	}
	if ds, _ := f.Devices("listed", "d2", "", 10); len(ds) != 1 || ds[0].ID != "d2" {
		t.Fatalf("devices by prefix: %+v", ds)
	}
}

func TestFormat8Versions(t *testing.T) {
	for name, c := range map[string]struct {
		t       CmdType
		payload any
		version uint16
		format  int
	}{
		"x5c provisioner": {CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f", false, false)}, 6, 8},
		"device issue":    {CmdIssue, Issue{Device: "d", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s", "f")}, 4, 8},
		"token issue":     {CmdIssue, Issue{TokenHash: []byte("h"), Cert: deviceCert("s", "f")}, 3, 0},
		"devices put":     {CmdDevicesPut, DevicesPut{}, 1, 8},
		"device revoke":   {CmdDeviceRevoke, DeviceRevoke{}, 1, 8},
	} {
		env, err := NewEnvelope(c.t, "x", c.payload)
		if err != nil || env.Version != c.version || env.Format() != c.format {
			t.Errorf("%s: version %d, format %d (%v), want %d and %d", name, env.Version, env.Format(), err, c.version, c.format)
		}
	}
}

// A provisioner's devices go with it, only when forced, but for the
// revoked ones: one made later under the name starts with no allow-list
// and no enrollments, and with every revocation.
func TestDeletingAProvisionerDeletesItsDevices(t *testing.T) {
	f, b := lifecycle(t)
	run := func(typ CmdType, p any) error { t.Helper(); return apply(t, f, b.entry(typ, t0, p)) }
	for _, c := range []struct {
		typ CmdType
		p   any
	}{
		{CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f", true, false)}},
		{CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f2", true, false)}},
		{CmdDevicesPut, DevicesPut{Provisioner: "f", IDs: []string{"d1", "d2"}}},
		{CmdDevicesPut, DevicesPut{Provisioner: "f2", IDs: []string{"d1"}}},
		{CmdIssue, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s1", "f")}},
		{CmdDeviceRevoke, DeviceRevoke{Provisioner: "f", ID: "D3"}},
	} {
		if err := run(c.typ, c.p); err != nil {
			t.Fatal(err)
		}
	}
	// Devices are keyed by the attribute device_id names: it stays.
	p := x5cProv("f", true, false)
	p.X5C.DeviceID = "cn"
	if err := run(CmdProvisionerPut, ProvisionerPut{Provisioner: p, ExpectedVersion: 1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("device_id changed under devices: %v", err)
	}
	if err := run(CmdProvisionerDel, ProvisionerDelete{Name: "f"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete with devices, unforced: %v", err)
	}
	if err := run(CmdProvisionerDel, ProvisionerDelete{Name: "f", Force: true}); err != nil {
		t.Fatal(err)
	}
	// The revocation left is keyed by serial number: a provisioner made
	// under the name keys its devices so too.
	byCN := x5cProv("f", true, false)
	byCN.X5C.DeviceID = "cn"
	if err := run(CmdProvisionerPut, ProvisionerPut{Provisioner: byCN}); !errors.Is(err, ErrConflict) {
		t.Fatalf("recreated keyed by CN over revoked serials: %v", err)
	}
	if err := run(CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f", true, false)}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := f.Devices("f", "", "", 10); len(ds) != 1 || ds[0].ID != "d3" || !ds[0].Revoked() {
		t.Fatalf("the new provisioner inherited %+v, want the revocation of d3 alone", ds)
	}
	if err := run(CmdIssue, Issue{Device: "d3", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s3", "f")}); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("a revoked device of the deleted provisioner: %v", err)
	}
	if err := run(CmdIssue, Issue{Device: "d2", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s2", "f")}); !errors.Is(err, ErrDeviceNotListed) {
		t.Fatalf("a device of the deleted provisioner: %v", err)
	}
	if ds, _ := f.Devices("f2", "", "", 10); len(ds) != 1 {
		t.Fatalf("another provisioner's devices: %+v", ds)
	}
}

// A provisioner deleted and made again under its name is another one
// (its versions start again at 1): an enrollment verified against the
// deleted one is refused (the proposer verifies the device again), and
// the certificates the deleted one issued renew no more.
func TestAProvisionerMadeAgainIsAnotherOne(t *testing.T) {
	f, b := lifecycle(t)
	at := func(d time.Duration, typ CmdType, p any) error {
		t.Helper()
		return apply(t, f, b.entry(typ, t0.Add(d), p))
	}
	for _, step := range []struct {
		d   time.Duration
		typ CmdType
		p   any
	}{
		{0, CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f", false, false)}},
		{0, CmdIssue, Issue{Device: "d1", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s1", "f")}},
		{time.Second, CmdProvisionerDel, ProvisionerDelete{Name: "f", Force: true}},
		{2 * time.Second, CmdProvisionerPut, ProvisionerPut{Provisioner: x5cProv("f", false, false)}},
	} {
		if err := at(step.d, step.typ, step.p); err != nil {
			t.Fatal(err)
		}
	}
	stale := Issue{Device: "d2", ProvisionerVersion: 1, ProvisionerCreated: t0, Cert: deviceCert("s2", "f")}
	if err := at(3*time.Second, CmdIssue, stale); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("verified against the deleted provisioner: %v", err)
	}
	stale.ProvisionerCreated = t0.Add(2 * time.Second)
	if err := at(3*time.Second, CmdIssue, stale); err != nil {
		t.Fatalf("verified against the current one: %v", err)
	}
	next := deviceCert("s3", "f")
	next.SANs, next.Subject = []string{"s1.devices.example"}, "CN=s1.devices.example"
	if err := at(3*time.Second, CmdRenew, Renew{Renews: "s1", Cert: next}); !errors.Is(err, ErrCertUnknown) {
		t.Fatalf("renewed under the provisioner made again: %v", err)
	}
}

// Two x5c provisioners never make one name: each keeps its own device IDs,
// so two devices would share it.
func TestX5CProvisionersDoNotShareATemplate(t *testing.T) {
	f, b := lifecycle(t)
	run := func(p Provisioner) error {
		t.Helper()
		return apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p}))
	}
	a := x5cProv("a", false, false)
	a.X5C.Names = []string{"{serial}.devices.example"}
	if err := run(a); err != nil {
		t.Fatal(err)
	}
	other := x5cProv("b", false, false)
	other.X5C.Names = []string{"spiffe://d.example/{id}", "{ID}.Devices.example"}
	if err := run(other); !errors.Is(err, ErrConflict) {
		t.Fatalf("the same template in another spelling: %v", err)
	}
	other.X5C.Names = []string{"{id}.b.devices.example"}
	if err := run(other); err != nil {
		t.Fatalf("a template of its own: %v", err)
	}
}
