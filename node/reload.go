package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// Reload applies what can change without a restart (SIGHUP): the API's TLS
// certificate and key, read again from their files; the audit file,
// reopened (so a log rotation's rename lands new lines in a new file); and
// the public keys of jwk provisioners, from their jwk_file. next is the
// config file read again; nil (dev mode, or a file that no longer parses)
// reloads the files in use. A piece that fails is logged and keeps its old
// state: Reload never stops the node. The log level is the caller's: it
// owns the logger.
func (n *Node) Reload(next *Config) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	n.log.Info("reloading")
	if next != nil {
		n.certFile, n.keyFile = next.TLSCertFile, next.TLSKeyFile
	}
	if n.certFile == "" {
		// api.tls_provisioner alone: nothing to read
	} else if err := n.loadAPICert(); err != nil {
		n.log.Error("API certificate not reloaded; serving the previous one", "cert", n.certFile, "key", n.keyFile, "err", err)
	}
	if n.audit != nil {
		path := n.audit.path
		if next != nil && next.AuditFile != "" {
			path = next.AuditFile
		}
		if err := n.audit.reopen(path); err != nil {
			n.log.Error("audit file not reopened; writing to the previous one", "file", path, "err", err)
		}
	}
	n.reloadGossipKeys(next)
	if next == nil {
		return
	}
	if n.cfg.file != nil && next.file != nil {
		if changed := needsRestart("", reflect.ValueOf(*n.cfg.file), reflect.ValueOf(*next.file)); len(changed) > 0 {
			n.log.Warn("settings changed in the config file take effect only at a restart", "settings", strings.Join(changed, ","))
		}
	}
	if len(next.Provisioners) == 0 {
		return
	}
	if !n.cfg.Bootstrap && n.cfg.BootstrapExpect == 0 {
		n.log.Info("provisioner blocks not applied: only a node that bootstraps (bootstrap = true or bootstrap_expect) applies them")
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(authority.WithOrigin(n.ctx, "node:"+n.cfg.NodeName+" reload", ""), time.Minute)
		defer cancel()
		n.reloadProvisioners(ctx, next.Provisioners)
	}()
}

// loadAPICert reads the API's certificate and key; new handshakes get them.
func (n *Node) loadAPICert() error {
	c, err := loadAPIPair(n.certFile, n.keyFile)
	if err != nil {
		return err
	}
	leaf := c.Leaf
	if old := n.apiCert.Swap(c); old != nil && !old.Leaf.Equal(leaf) {
		n.log.Info("API certificate reloaded", "serial", fmt.Sprintf("%x", leaf.SerialNumber), "not_after", leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// reloadSettings are applied by Reload; needsRestart does not list them.
var reloadSettings = map[string]bool{"log_level": true, "api.tls_cert_file": true, "api.tls_key_file": true,
	"audit.file": true, "provisioner": true, "gossip.key": true, "gossip.key_file": true}

// needsRestart names, as the file spells them, the settings that differ
// between a and b (fileConfig values) and that Reload does not apply.
func needsRestart(prefix string, a, b reflect.Value) []string {
	var out []string
	for i := range a.NumField() {
		name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("hcl"), ",")
		path := prefix + name
		x, y := a.Field(i), b.Field(i)
		switch {
		case reloadSettings[path]:
		case x.Kind() == reflect.Pointer && !x.IsNil() && !y.IsNil() && x.Elem().Kind() == reflect.Struct:
			out = append(out, needsRestart(path+".", x.Elem(), y.Elem())...)
		case !reflect.DeepEqual(x.Interface(), y.Interface()):
			out = append(out, path)
		}
	}
	return out
}

// reloadGossipKeys makes the gossip keyring what the key or key_file of
// next (nil: the current configuration, its file read again) says.
func (n *Node) reloadGossipKeys(next *Config) {
	if n.cfg.GossipListen == "" {
		return
	}
	cfg := &n.cfg
	if next != nil {
		cfg = next
	}
	primary, others, err := cfg.gossipKeys()
	if err == nil {
		err = n.cluster.SetGossipKeys(primary, others)
	}
	if err != nil {
		n.log.Error("gossip keys not reloaded; keeping the previous keyring", "err", err)
		return
	}
	sum := sha256.Sum256(primary)
	n.log.Info("gossip keyring reloaded", "keys", 1+len(others), "primary_sha256", hex.EncodeToString(sum[:4]))
}

// reloadProvisioners gives existing jwk provisioners the key their
// jwk_file holds now, through the path bootstrap creates them by. Nothing
// else of a provisioner is taken from the file after bootstrap: the admin
// API owns provisioners then, and the file must not undo its changes.
func (n *Node) reloadProvisioners(ctx context.Context, pcs []*ProvisionerConfig) {
	for _, pc := range pcs {
		cur, err := n.ca.Provisioner(ctx, pc.Name)
		if errors.Is(err, authority.ErrProvisionerUnknown) {
			n.log.Warn("provisioner in the config file not created: the file creates provisioners only in a cluster that has none; use 'quorumca provisioner create'",
				"provisioner", pc.Name)
			continue
		}
		if err != nil {
			n.log.Error("provisioner not reloaded", "provisioner", pc.Name, "err", err)
			continue
		}
		if !sameSettings(&pc.Provisioner, cur) {
			n.log.Warn("provisioner settings in the config file differ from the cluster's and are not applied: after bootstrap the admin API owns them ('quorumca provisioner update')",
				"provisioner", pc.Name)
		}
		if pc.JWKFile == "" || cur.Kind != fsm.KindJWK {
			continue
		}
		jwk, err := os.ReadFile(pc.JWKFile)
		if err != nil {
			n.log.Error("provisioner key not reloaded; the previous one stays", "provisioner", pc.Name, "err", err)
			continue
		}
		if sameJSON(jwk, cur.JWK) {
			continue
		}
		next := *cur
		next.JWK = jwk
		if err := n.ca.PutProvisioner(ctx, next, cur.Version); err != nil {
			n.log.Error("provisioner key not reloaded; the previous one stays", "provisioner", pc.Name, "file", pc.JWKFile, "err", err)
			continue
		}
		n.log.Info("provisioner key reloaded", "provisioner", pc.Name, "file", pc.JWKFile)
	}
}

// sameSettings: a and b agree on what the file says of a provisioner
// besides its key.
func sameSettings(a, b *fsm.Provisioner) bool {
	x, _ := json.Marshal([]any{a.Kind, a.Authority, a.Policy})
	y, _ := json.Marshal([]any{b.Kind, b.Authority, b.Policy})
	return bytes.Equal(x, y)
}

func sameJSON(a, b []byte) bool {
	var x, y bytes.Buffer
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}
