//go:build !agent

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/quorumca/quorumca/client"
)

func init() {
	register(&command{name: "device", synopsis: "Manage the devices of x5c provisioners (allow-list, enrollments)"},
		&command{name: "device add", synopsis: "List devices on an allow-list (-f FILE: one ID per line, - for stdin)", setup: deviceAdd},
		&command{name: "device list", synopsis: "List a provisioner's devices", setup: deviceList},
		&command{name: "device get", args: "ID", synopsis: "Show one device", setup: deviceGet},
		&command{name: "device revoke", args: "ID", synopsis: "Revoke a device's entry: it enrolls and renews no more", setup: deviceRevoke})
}

func deviceTable(ds ...client.Device) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tLISTED\tREVOKED\tSERIAL\tENROLLED AT\tENROLLMENTS")
		for _, d := range ds {
			at := ""
			if !d.EnrolledAt.IsZero() {
				at = d.EnrolledAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s\t%s\t%d\n", d.ID, d.Listed, d.Revoked, d.Serial, at, d.Enrollments)
		}
	}
}

func provisionerFlag(fs *flag.FlagSet) *string {
	return fs.String("provisioner", "", "the x5c provisioner (required)")
}

// readIDs reads one device ID per line; blank lines and # comments are
// skipped.
func readIDs(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var ids []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			ids = append(ids, l)
		}
	}
	return ids, sc.Err()
}

func deviceAdd(fs *flag.FlagSet) func([]string) int {
	prov := provisionerFlag(fs)
	file := fs.String("f", "", "file of device IDs, one per line (- for standard input)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if *prov == "" || *file == "" {
			return nil, errors.New("-provisioner and -f are required")
		}
		ids, err := readIDs(*file)
		if err != nil {
			return nil, err
		}
		n, err := c.PutDevices(cx, *prov, ids)
		if err != nil {
			return nil, err
		}
		return &result{map[string]int{"listed": n}, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "listed %d devices\n", n) }}, nil
	})
}

func deviceList(fs *flag.FlagSet) func([]string) int {
	prov := provisionerFlag(fs)
	prefix := fs.String("prefix", "", "only IDs starting with this")
	max := fs.Int("max", 1000, "at most this many")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if *prov == "" {
			return nil, errors.New("-provisioner is required")
		}
		var all []client.Device
		for after := ""; ; {
			ds, next, err := c.Devices(cx, *prov, *prefix, after, min(*max-len(all), 1000))
			if err != nil {
				return nil, err
			}
			all = append(all, ds...)
			if after = next; next == "" || len(all) >= *max {
				return &result{all, deviceTable(all...)}, nil
			}
		}
	})
}

func deviceGet(fs *flag.FlagSet) func([]string) int {
	prov := provisionerFlag(fs)
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		d, err := c.Device(cx, *prov, pos[0])
		if err != nil {
			return nil, err
		}
		return &result{d, deviceTable(*d)}, nil
	})
}

func deviceRevoke(fs *flag.FlagSet) func([]string) int {
	prov := provisionerFlag(fs)
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		d, err := c.RevokeDevice(cx, *prov, pos[0])
		if err != nil {
			return nil, err
		}
		return &result{d, deviceTable(*d)}, nil
	})
}
