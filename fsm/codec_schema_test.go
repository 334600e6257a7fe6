package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// applyOnlyCertFields are the fields of Cert that Apply sets and no
// proposal carries, so the binary frames leave them out. A field added to
// Cert is either written by appendCert and read by readCert, or named
// here; TestBinaryPayloadsCarryEveryField fails until it is one or the
// other.
var applyOnlyCertFields = map[string]bool{"RenewedBy": true, "Lineage": true}

// fill sets every field of v (a pointer) to a value other than its zero,
// recursing into structs and pointers to structs, and skips the fields
// skip names (of Cert).
func fill(t *testing.T, v reflect.Value, path string, skip map[string]bool) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path, skip)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 12, 6, 1, 2, 3, 456789, time.UTC).Add(time.Duration(len(path)) * time.Second)))
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || (v.Type() == reflect.TypeFor[Cert]() && skip[f.Name]) {
				continue
			}
			fill(t, v.Field(i), path+"."+f.Name, skip)
		}
	case reflect.String:
		v.SetString("v" + path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(len(path)))
	case reflect.Uint64:
		v.SetUint(uint64(len(path)))
	case reflect.Slice:
		switch v.Type().Elem().Kind() {
		case reflect.Uint8:
			v.SetBytes([]byte("b" + path))
		case reflect.String:
			v.Set(reflect.ValueOf([]string{"x" + path, "y" + path}))
		default:
			t.Fatalf("%s: fill does not know %s", path, v.Type())
		}
	case reflect.Map:
		v.Set(reflect.ValueOf(map[string]string{"k" + path: "v" + path, "": ""}))
	default:
		t.Fatalf("%s: fill does not know %s", path, v.Type())
	}
}

// Every field of the binary payloads (issue v3, renew) goes through
// appendPayload and readPayload and comes back equal, and through JSON
// too (the JSON version of issue, and the certificate record as stored).
// A field added to Cert, Issue, Renew or OneTime and forgotten in the
// codec fails here instead of vanishing from committed entries.
func TestBinaryPayloadsCarryEveryField(t *testing.T) {
	type binary interface {
		binaryPayload
		payloadReader
	}
	for _, in := range []binary{&Issue{}, &Renew{}} {
		name := fmt.Sprintf("%T", in)
		fill(t, reflect.ValueOf(in).Elem(), name, applyOnlyCertFields)
		out := reflect.New(reflect.TypeOf(in).Elem()).Interface().(binary)
		if err := readFrame(in.appendPayload(nil), out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Errorf("%s: binary frame lost a field:\n got %+v\nwant %+v", name, out, in)
		}
		js, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		back := reflect.New(reflect.TypeOf(in).Elem()).Interface()
		if err := json.Unmarshal(js, back); err != nil || !reflect.DeepEqual(back, in) {
			t.Errorf("%s: JSON lost a field (%v):\n got %+v\nwant %+v", name, err, back, in)
		}
	}
	// The fields left out are Apply's own: a proposal that set one would
	// be refused or overwritten, never silently stored.
	var c Cert
	fill(t, reflect.ValueOf(&c).Elem(), "Cert", nil)
	var back Cert
	if err := readFrame(appendCert(nil, &c), readerFunc(func(r *reader) { readCert(r, &back) })); err != nil {
		t.Fatal(err)
	}
	for i := range reflect.TypeFor[Cert]().NumField() {
		f := reflect.TypeFor[Cert]().Field(i)
		lost := !reflect.DeepEqual(reflect.ValueOf(back).Field(i).Interface(), reflect.ValueOf(c).Field(i).Interface())
		if lost != applyOnlyCertFields[f.Name] {
			t.Errorf("Cert.%s: lost in the binary frame %v, named apply-only %v", f.Name, lost, applyOnlyCertFields[f.Name])
		}
	}
}

type readerFunc func(r *reader)

func (f readerFunc) readPayload(r *reader) { f(r) }
