package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/quorumca/quorumca/api/apitypes"
)

func devicesPath(provisioner string) string {
	return "/v1/admin/provisioners/" + url.PathEscape(provisioner) + "/devices"
}

// PutDevices lists devices on an x5c provisioner's allow-list; it returns
// how many distinct IDs were listed.
func (c *Client) PutDevices(ctx context.Context, provisioner string, ids []string) (int, error) {
	var out struct {
		Listed int `json:"listed"`
	}
	err := c.Do(ctx, "POST", devicesPath(provisioner), apitypes.DevicesRequest{IDs: ids}, &out)
	return out.Listed, err
}

// Devices lists a provisioner's devices whose ID starts with prefix, after
// the ID after; next is the cursor of the following page ("" at the end).
func (c *Client) Devices(ctx context.Context, provisioner, prefix, after string, limit int) (devices []Device, next string, err error) {
	q := url.Values{}
	for k, v := range map[string]string{"prefix": prefix, "after": after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Devices []Device `json:"devices"`
		Next    string   `json:"next"`
	}
	err = c.Do(ctx, "GET", devicesPath(provisioner)+"?"+q.Encode(), nil, &out)
	return out.Devices, out.Next, err
}

// Device returns one device of a provisioner.
func (c *Client) Device(ctx context.Context, provisioner, id string) (*Device, error) {
	var d Device
	return &d, c.Do(ctx, "GET", devicesPath(provisioner)+"/"+url.PathEscape(id), nil, &d)
}

// RevokeDevice revokes a device's entry: it enrolls and renews no more.
func (c *Client) RevokeDevice(ctx context.Context, provisioner, id string) (*Device, error) {
	var d Device
	return &d, c.Do(ctx, "POST", devicesPath(provisioner)+"/"+url.PathEscape(id)+"/revoke", nil, &d)
}
