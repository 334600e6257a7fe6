package api

import (
	"net/http"
	"strconv"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// maxDevicesBody fits the largest allow-list upload: 10,000 IDs of 64
// characters, quoted.
const maxDevicesBody = 1 << 20

func deviceJSON(d *fsm.Device) apitypes.Device {
	return apitypes.Device{ID: d.ID, Listed: d.Listed, ListedAt: d.ListedAt, Revoked: d.Revoked(), RevokedAt: d.RevokedAt,
		Serial: d.Serial, EnrolledAt: d.EnrolledAt, Enrollments: d.Enrollments}
}

// putDevices lists devices on an x5c provisioner's allow-list.
func (s *Server) putDevices(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	var req apitypes.DevicesRequest
	if err := decode(w, r, maxDevicesBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.CA.PutDevices(ctx, r.PathValue("name"), req.IDs)
	if err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"listed": n})
}

// listDevices pages through a provisioner's devices by ID:
// ?prefix=, ?after= (the last ID of the previous page), ?limit= (1000 and
// at most); "next" is set while a full page came back.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := authority.MaxDeviceList
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(w, r, badRequest("limit: a positive number"))
			return
		}
		limit = min(n, limit)
	}
	ds, err := s.CA.Devices(ctx, r.PathValue("name"), q.Get("prefix"), q.Get("after"), limit)
	if err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	out := struct {
		Devices []apitypes.Device `json:"devices"`
		Next    string            `json:"next,omitempty"`
	}{Devices: []apitypes.Device{}}
	for _, d := range ds {
		out.Devices = append(out.Devices, deviceJSON(d))
	}
	if len(ds) == limit {
		out.Next = ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	d, err := s.CA.Device(ctx, r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	writeJSON(w, http.StatusOK, deviceJSON(d))
}

// revokeDevice revokes a device's entry: it enrolls no more, and its
// certificates renew no more (revoke them to end them now).
func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	d, err := s.CA.RevokeDevice(ctx, r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	writeJSON(w, http.StatusOK, deviceJSON(d))
}
