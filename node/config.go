package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/quorumca/quorumca/cluster"
)

// Config is everything a node needs. Load reads it from an HCL file; tests
// and dev mode fill it directly.
type Config struct {
	NodeName string
	DataDir  string

	APIListen    string // host:port
	APIAdvertise string // host:port others use; defaults to the listener's address
	TLSCertFile  string // the API's server certificate (PEM, may include the chain)
	TLSKeyFile   string

	RaftListen    string
	RaftAdvertise string

	Bootstrap      bool
	Join           []string // https://host:port of existing members
	JoinSecret     string
	JoinSecretFile string // read at start when JoinSecret is empty
	CAFile         string // trust anchors for node-to-node HTTPS

	// Authority is created when this node bootstraps a cluster.
	Authority *AuthorityConfig
	// BootstrapAdminTokenFile receives the first admin token (mode 0600)
	// when this node bootstraps a cluster.
	BootstrapAdminTokenFile string

	// Not in the file: tuning for tests and dev mode.
	Timing      cluster.Timing
	HoldTimeout time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
}

// AuthorityConfig names an issuing CA: its certificates and signing key.
type AuthorityConfig struct {
	Name       string
	RootFile   string
	ChainFile  string // issuing certificate first, then any intermediates up to the root
	Key        string // key URI: softkey:/path (dev only), later awskms:, pkcs11:
	DefaultTTL time.Duration
}

type fileConfig struct {
	NodeName                string           `hcl:"node_name"`
	DataDir                 string           `hcl:"data_dir"`
	API                     *apiBlock        `hcl:"api,block"`
	Raft                    *raftBlock       `hcl:"raft,block"`
	Cluster                 *clusterBlock    `hcl:"cluster,block"`
	Authorities             []authorityBlock `hcl:"authority,block"`
	BootstrapAdminTokenFile string           `hcl:"bootstrap_admin_token_file,optional"`
}

type apiBlock struct {
	Listen      string `hcl:"listen"`
	Advertise   string `hcl:"advertise,optional"`
	TLSCertFile string `hcl:"tls_cert_file"`
	TLSKeyFile  string `hcl:"tls_key_file"`
}

type raftBlock struct {
	Listen    string `hcl:"listen"`
	Advertise string `hcl:"advertise,optional"`
}

type clusterBlock struct {
	Bootstrap      bool     `hcl:"bootstrap,optional"`
	Join           []string `hcl:"join,optional"`
	JoinSecret     string   `hcl:"join_secret,optional"`
	JoinSecretFile string   `hcl:"join_secret_file,optional"`
	CAFile         string   `hcl:"ca_file"`
}

type authorityBlock struct {
	Name       string `hcl:"name,label"`
	RootFile   string `hcl:"root_file"`
	ChainFile  string `hcl:"chain_file"`
	Key        string `hcl:"key"`
	DefaultTTL string `hcl:"default_ttl,optional"`
}

// Load reads and checks an HCL config file.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src)
}

// Parse reads an HCL config from src; filename is for messages.
func Parse(filename string, src []byte) (*Config, error) {
	var f fileConfig
	if err := hclsimple.Decode(filename, src, nil, &f); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if f.API == nil || f.Raft == nil || f.Cluster == nil {
		return nil, errors.New("config: the api, raft and cluster blocks are required")
	}
	c := &Config{
		NodeName: f.NodeName, DataDir: f.DataDir,
		APIListen: f.API.Listen, APIAdvertise: f.API.Advertise,
		TLSCertFile: f.API.TLSCertFile, TLSKeyFile: f.API.TLSKeyFile,
		RaftListen: f.Raft.Listen, RaftAdvertise: f.Raft.Advertise,
		Bootstrap: f.Cluster.Bootstrap, Join: f.Cluster.Join,
		JoinSecret: f.Cluster.JoinSecret, JoinSecretFile: f.Cluster.JoinSecretFile,
		CAFile: f.Cluster.CAFile, BootstrapAdminTokenFile: f.BootstrapAdminTokenFile,
	}
	switch len(f.Authorities) {
	case 0:
	case 1:
		a := f.Authorities[0]
		c.Authority = &AuthorityConfig{Name: a.Name, RootFile: a.RootFile, ChainFile: a.ChainFile, Key: a.Key}
		if a.DefaultTTL != "" {
			d, err := time.ParseDuration(a.DefaultTTL)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("config: authority %q: default_ttl %q is not a positive duration", a.Name, a.DefaultTTL)
			}
			c.Authority.DefaultTTL = d
		}
	default:
		return nil, errors.New("config: only one authority block is supported for now")
	}
	return c, c.Validate()
}

const minSecretLen = 16

// joinSecret returns the secret, reading it from its file if need be.
func (c *Config) joinSecret() (string, error) {
	if c.JoinSecret != "" {
		return c.JoinSecret, nil
	}
	b, err := os.ReadFile(c.JoinSecretFile)
	if err != nil {
		return "", fmt.Errorf("config: join_secret_file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < minSecretLen {
		return "", fmt.Errorf("config: the join secret in %s must be at least %d characters", c.JoinSecretFile, minSecretLen)
	}
	return s, nil
}

// Validate reports the first problem with c. It reads no files.
func (c *Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("config: node_name is required")
	case c.DataDir == "":
		return errors.New("config: data_dir is required")
	case c.APIListen == "" || c.RaftListen == "":
		return errors.New("config: api.listen and raft.listen are required")
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		return errors.New("config: api.tls_cert_file and api.tls_key_file are required")
	case c.CAFile == "":
		return errors.New("config: cluster.ca_file is required (it verifies other nodes)")
	case (c.JoinSecret == "") == (c.JoinSecretFile == ""):
		return errors.New("config: set one of cluster.join_secret and cluster.join_secret_file")
	case c.JoinSecret != "" && len(c.JoinSecret) < minSecretLen:
		return fmt.Errorf("config: the join secret must be at least %d characters", minSecretLen)
	case c.Bootstrap && c.Authority == nil:
		return errors.New("config: a bootstrapping node needs an authority block")
	case c.Bootstrap && len(c.Join) > 0:
		return errors.New("config: set bootstrap or join, not both")
	case !c.Bootstrap && len(c.Join) == 0:
		return errors.New("config: set bootstrap = true on the first node, or join = [...] on the others")
	}
	for _, j := range c.Join {
		u, err := url.Parse(j)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("config: join address %q must be https://host:port", j)
		}
	}
	if c.Authority != nil && (c.Authority.RootFile == "" || c.Authority.ChainFile == "" || c.Authority.Key == "") {
		return fmt.Errorf("config: authority %q needs root_file, chain_file and key", c.Authority.Name)
	}
	return nil
}
