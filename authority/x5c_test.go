package authority

import "testing"

// A template holds the device ID once, as a whole part of a name that no
// other device's, and no other template's, can equal or normalize to.
func TestX5CTemplates(t *testing.T) {
	for _, tmpl := range []string{"{serial}.devices.example", "{id}.d.example", "{id}@devices.example",
		"spiffe://devices.example/{id}", "spiffe://devices.example/sensor/{serial}", "https://d.example/{id}"} {
		if err := x5cTemplate(tmpl, "serial"); err != nil {
			t.Errorf("%q refused: %v", tmpl, err)
		}
	}
	for _, tmpl := range []string{"{id}", "{id}.1", "{id}.0x7f", "mgmt-{id}.d.example", "{cn}-{serial}.d.example", "a.{id}.example",
		"{id}.x@d.example", "{id}@d.example.", "urn:x:{id}", "spiffe://{id}", "https://{id}", "spiffe://d.example#/{id}",
		"spiffe://d.example?x=/{id}", "urn:x?q=://h/{id}", "mailto:x://y/{id}", "spiffe://d.example/../{id}",
		"spiffe://d.example/./{id}", "spiffe://d.example//{id}", "spiffe://d.example/a%2F/{id}", "spiffe://[::1]/{id}",
		"spiffe://u@d.example/{id}", "https://d.example:8443/{id}", "{cn}.d.example", "*.{id}.example", "{id}{id}.d.example",
		"spiffe://1.2.3.4/{id}", "spiffe://0x7f.1/{id}", "spiffe://devices.123/{id}", "spiffe://d.example/a b/{id}",
		"spiffe://d.example/a\\b/{id}", "spiffe://d.example/é/{id}", "spiffe://d.example/a;b/{id}", "{id}@1.2.3.4"} {
		if err := x5cTemplate(tmpl, "serial"); err == nil {
			t.Errorf("%q accepted", tmpl)
		}
	}
	for _, props := range []map[string]string{{"device_id": "sn1"}, {"device_id=sn1\x00": "x"}, {"k": "v\x00"}, {"a=b": "c"}} {
		if err := checkProperties(props); err == nil {
			t.Errorf("token properties %q accepted", props)
		}
	}
	if err := x5cTemplate("{cn}.d.example", "cn"); err != nil {
		t.Errorf("{cn} keyed by CN: %v", err)
	}
}
