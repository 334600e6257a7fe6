package node

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/api"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
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
	// TLSProvisioner names a server provisioner: the API's certificate is
	// then issued by the cluster to this node, and renewed (apicert.go);
	// the files, if set, serve only until the first one is issued.
	TLSProvisioner string
	// HTTPListen serves CRLs and OCSP over plain HTTP; "" for none.
	HTTPListen string
	// OCSP bounds the responder (both listeners): requests per source
	// address, and the memory of signed answers.
	OCSP OCSPConfig
	// ACME: how this node validates ACME challenges (the acme block).
	ACME acme.ValidatorConfig

	// APIPublicURLs are the base URLs clients reach the API at
	// (https://host[:port]); a self-minted token's aud must name one.
	// Default: https:// + the advertised API address.
	APIPublicURLs []string

	RaftListen    string
	RaftAdvertise string

	Bootstrap bool
	Join      []string // https://host:port of existing members

	// Gossip membership: with it, nodes find each other (RetryJoin), form a
	// cluster once BootstrapExpect servers are present, and the leader
	// keeps Raft membership in line with who is alive.
	GossipListen      string
	GossipAdvertise   string
	GossipKey         string // base64 of a 16, 24 or 32 byte AES key
	GossipKeyFile     string
	RetryJoin         []string
	BootstrapExpect   int
	Voters            int // 3 or 5
	DeadServerCleanup time.Duration
	// ServerStabilization: a new server is promoted to voter once it has
	// been healthy this long (default 10s).
	ServerStabilization time.Duration
	GossipFast          bool          // tests: shorter gossip timings
	NodeCertTTL         time.Duration // tests: short-lived node certificates
	JoinSecret          string
	JoinSecretFile      string // read at start when JoinSecret is empty
	// CAFile is no longer used (nodes verify each other against the
	// cluster CA alone); accepted, with a warning, so older configs start.
	CAFile string
	// CAFingerprint, if set, pins the cluster CA for a node that cannot
	// use its key: hex SHA-256 of its public key ("sha256:" may lead), as
	// /v1/health shows it.
	CAFingerprint string
	// ClusterCAKey names the key of the cluster CA, which certifies nodes
	// for their mutual TLS; the same URI on every node.
	ClusterCAKey string

	// Authorities and Provisioners are created when this node bootstraps a
	// cluster. With no provisioner, a "default" enrollment-token provisioner
	// on the first authority is created.
	Authorities  []*AuthorityConfig
	Provisioners []*ProvisionerConfig
	// BootstrapAdminTokenFile receives the first admin token (mode 0600)
	// when this node bootstraps a cluster.
	BootstrapAdminTokenFile string

	// Signer bounds this node's use of each signing key (KMS quota share).
	Signer signer.Options
	// AllowInsecureSoftSigner permits softkey: URIs, keys in files. For
	// development only; the node warns at every start.
	AllowInsecureSoftSigner bool
	// AuditFile, if set, receives this node's audit log as JSON lines.
	AuditFile string
	// ProxyProtocolFrom are the balancer ranges (CIDRs) whose PROXY
	// protocol headers are trusted on the API and HTTP listeners.
	ProxyProtocolFrom []string
	// MaxConnsPerClient and MaxIdleConnsPerClient cap the connections one
	// client address (IPv6: one /64) holds open on the API and HTTP
	// listeners, and those idle between requests; 0 for the defaults (4096
	// and 64).
	MaxConnsPerClient     int
	MaxIdleConnsPerClient int
	// AdminListen serves pprof and metrics over plain HTTP ("" for none).
	AdminListen string
	// MetricsTokenFile, if set, holds the bearer token that /v1/metrics
	// requires on the API and admin listeners; read at start.
	MetricsTokenFile string
	Pyroscope        *PyroscopeConfig
	// CRLInterval: the leader re-signs a CRL that lacks a revocation at
	// most this often (default DefaultCRLInterval); a revocation is on
	// the CRL within it.
	CRLInterval time.Duration
	// LineageLimits bound renewals and holder revocations per
	// certificate lineage, on each node (zero fields: the defaults).
	LineageLimits authority.LineageLimits
	// Retention: the leader removes the records of certificates expired
	// longer than this (0: authority.DefaultRetention), archiving them
	// first to Archive (a URI: file:///dir or s3://bucket/prefix; "" for
	// none). KeepExpired keeps them forever.
	Retention   time.Duration
	KeepExpired bool
	Archive     string
	// AuditRetention: the leader cuts audit entries older than this from
	// the state (0: authority.DefaultAuditRetention), archiving them first
	// to Archive, and keeps a checkpoint signed by the cluster CA key.
	// KeepAudit keeps them forever.
	AuditRetention time.Duration
	KeepAudit      bool
	// SnapshotDestination (file:///dir or s3://bucket/prefix, as Archive;
	// "" for none): while this node leads, it writes a snapshot of the
	// whole state there every SnapshotInterval.
	SnapshotDestination string
	SnapshotInterval    time.Duration

	// Not in the file: tuning for tests and dev mode.
	Streams api.StreamLimits // audit follows; each write of a stream (default 30s)
	// RetentionInterval: how often the leader looks for records past
	// their retention (default a minute).
	RetentionInterval time.Duration
	Timing            cluster.Timing
	HoldTimeout       time.Duration
	Now               func() time.Time
	Logger            *slog.Logger

	// LogLevel is the file's log_level ("" if unset); the command that
	// owns the logger applies it, at start and at each reload.
	LogLevel string
	file     *fileConfig // as read, to tell what a reload cannot apply
}

// AuthorityConfig names an issuing CA: its certificates and signing key.
type AuthorityConfig struct {
	Name      string
	RootFile  string
	ChainFile string // issuing certificate first, then any intermediates up to the root
	Key       string // key URI: softkey:/path (dev only), later awskms:, pkcs11:
	// BaseURL is the plain-HTTP URL (a load balancer, usually) that issued
	// certificates name for CRLs and OCSP.
	BaseURL string
	// OCSPResponderKey, if set, is certified as the authority's delegated
	// OCSP responder when the authority is created.
	OCSPResponderKey string
	// SCEPRAKey, if set, is certified as the authority's SCEP RA (an RSA
	// key: soft or PKCS#11) when the authority is created.
	SCEPRAKey string
	// RootKey, if set, is the root's key (KMS or HSM): the root then signs
	// a CRL for its intermediates. CRL dates its CRLs (zero: defaults).
	// Both are set on the authority at every start of a bootstrap node.
	RootKey string
	CRL     fsm.CRLSettings
}

// OCSPConfig tunes the OCSP responder. Zero values take the defaults.
type OCSPConfig struct {
	Rate       float64 // requests per second per source address (IPv6: per /64)
	Burst      int
	CacheBytes int // signed answers kept in memory
}

// OCSP defaults: far above what a relying party or a stapling server asks
// (once per certificate per answer's validity), low enough that one
// address cannot keep a node busy.
const (
	DefaultOCSPRate  = 100
	DefaultOCSPBurst = 1000
)

// PyroscopeConfig sends continuous profiles to a Pyroscope server.
type PyroscopeConfig struct {
	ServerAddress   string
	ApplicationName string
	UploadRate      time.Duration
}

// ProvisionerConfig is a provisioner created at bootstrap.
type ProvisionerConfig struct {
	fsm.Provisioner
	JWKFile string // public JWK, for kind jwk
}

type fileConfig struct {
	LogLevel                string              `hcl:"log_level,optional"`
	NodeName                string              `hcl:"node_name"`
	DataDir                 string              `hcl:"data_dir"`
	API                     *apiBlock           `hcl:"api,block"`
	HTTP                    *httpBlock          `hcl:"http,block"`
	Raft                    *raftBlock          `hcl:"raft,block"`
	Cluster                 *clusterBlock       `hcl:"cluster,block"`
	Gossip                  *gossipBlock        `hcl:"gossip,block"`
	Authorities             []authorityBlock    `hcl:"authority,block"`
	Provisioners            []provisionerBlock  `hcl:"provisioner,block"`
	Signer                  *signerBlock        `hcl:"signer,block"`
	BootstrapAdminTokenFile string              `hcl:"bootstrap_admin_token_file,optional"`
	AllowInsecureSoftSigner bool                `hcl:"allow_insecure_soft_signer,optional"`
	Audit                   *auditBlock         `hcl:"audit,block"`
	Admin                   *adminBlock         `hcl:"admin,block"`
	Metrics                 *metricsBlock       `hcl:"metrics,block"`
	Profiling               *profilingBlock     `hcl:"profiling,block"`
	OCSP                    *ocspBlock          `hcl:"ocsp,block"`
	ACME                    *acmeBlock          `hcl:"acme,block"`
	CRL                     *crlBlock           `hcl:"crl,block"`
	LineageLimits           *lineageLimitsBlock `hcl:"lineage_limits,block"`
	Storage                 *storageBlock       `hcl:"storage,block"`
	Snapshot                *snapshotBlock      `hcl:"snapshot,block"`
}

type snapshotBlock struct {
	Interval    string `hcl:"interval"`
	Destination string `hcl:"destination"`
}

type crlBlock struct {
	Interval string `hcl:"interval,optional"`
}

type storageBlock struct {
	ExpiredRetention string `hcl:"expired_retention,optional"`
	AuditRetention   string `hcl:"audit_retention,optional"`
	Archive          string `hcl:"archive,optional"`
}

type lineageLimitsBlock struct {
	RenewalsPerMinute          float64 `hcl:"renewals_per_minute,optional"`
	RenewalBurst               int     `hcl:"renewal_burst,optional"`
	HolderRevocationsPerMinute float64 `hcl:"holder_revocations_per_minute,optional"`
	HolderRevocationBurst      int     `hcl:"holder_revocation_burst,optional"`
}

type ocspBlock struct {
	Rate    float64 `hcl:"rate,optional"`
	Burst   int     `hcl:"burst,optional"`
	CacheMB int     `hcl:"cache_mb,optional"`
}

// acmeBlock: where this node looks when it validates ACME challenges.
type acmeBlock struct {
	Resolvers     []string `hcl:"resolvers,optional"`
	HTTP01Port    int      `hcl:"http01_port,optional"`
	TLSALPN01Port int      `hcl:"tlsalpn01_port,optional"`
	// Perspectives: zones that must see a challenge's answer; Zone: this
	// node's (default: its name).
	Perspectives int    `hcl:"perspectives,optional"`
	Zone         string `hcl:"zone,optional"`
}

type adminBlock struct {
	Listen string `hcl:"listen"`
}

type metricsBlock struct {
	BearerTokenFile string `hcl:"bearer_token_file"`
}

type profilingBlock struct {
	Pyroscope *struct {
		ServerAddress   string `hcl:"server_address"`
		ApplicationName string `hcl:"application_name,optional"`
		UploadRate      string `hcl:"upload_rate,optional"`
	} `hcl:"pyroscope,block"`
}

type auditBlock struct {
	File string `hcl:"file"`
}

type signerBlock struct {
	Concurrency int     `hcl:"concurrency,optional"`
	Rate        float64 `hcl:"rate,optional"`
	Burst       int     `hcl:"burst,optional"`
	Timeout     string  `hcl:"timeout,optional"`
	MaxWait     string  `hcl:"max_wait,optional"`
	// Keys this node creates (authority create -create-keys, rotate
	// -create-key) take this key's policy and these tags (awskms).
	NewKeyPolicyFrom string            `hcl:"new_key_policy_from,optional"`
	NewKeyTags       map[string]string `hcl:"new_key_tags,optional"`
}

type apiBlock struct {
	Listen            string   `hcl:"listen"`
	Advertise         string   `hcl:"advertise,optional"`
	PublicURLs        []string `hcl:"public_urls,optional"`
	TLSCertFile       string   `hcl:"tls_cert_file,optional"`
	TLSKeyFile        string   `hcl:"tls_key_file,optional"`
	TLSProvisioner    string   `hcl:"tls_provisioner,optional"`
	ProxyProtocolFrom []string `hcl:"proxy_protocol_from,optional"`
	MaxConnsPerClient int      `hcl:"max_connections_per_client,optional"`
	MaxIdlePerClient  int      `hcl:"max_idle_connections_per_client,optional"`
}

type httpBlock struct {
	Listen string `hcl:"listen"`
}

type raftBlock struct {
	Listen    string `hcl:"listen"`
	Advertise string `hcl:"advertise,optional"`
}

type gossipBlock struct {
	Listen    string   `hcl:"listen"`
	Advertise string   `hcl:"advertise,optional"`
	Key       string   `hcl:"key,optional"`
	KeyFile   string   `hcl:"key_file,optional"`
	RetryJoin []string `hcl:"retry_join,optional"`
}

type clusterBlock struct {
	Bootstrap         bool     `hcl:"bootstrap,optional"`
	BootstrapExpect   int      `hcl:"bootstrap_expect,optional"`
	Voters            int      `hcl:"voters,optional"`
	DeadServerCleanup string   `hcl:"dead_server_cleanup,optional"`
	Stabilization     string   `hcl:"server_stabilization_time,optional"`
	Join              []string `hcl:"join,optional"`
	JoinSecret        string   `hcl:"join_secret,optional"`
	JoinSecretFile    string   `hcl:"join_secret_file,optional"`
	CAKey             string   `hcl:"ca_key"`
	CAFile            string   `hcl:"ca_file,optional"`
	CAFingerprint     string   `hcl:"ca_fingerprint,optional"`
}

type authorityBlock struct {
	Name      string `hcl:"name,label"`
	RootFile  string `hcl:"root_file"`
	ChainFile string `hcl:"chain_file"`
	Key       string `hcl:"key"`
	BaseURL   string `hcl:"base_url,optional"`
	// OCSPResponderKey: a delegated OCSP responder's key, set up with the authority.
	OCSPResponderKey string `hcl:"ocsp_responder_key,optional"`
	// SCEPRAKey: a SCEP RA's key (RSA), set up with the authority.
	SCEPRAKey string `hcl:"scep_ra_key,optional"`
	RootKey   string `hcl:"root_key,optional"`
	CRL       *struct {
		Validity string `hcl:"validity,optional"`
		Refresh  string `hcl:"refresh,optional"`
		Shards   int    `hcl:"shards,optional"`
	} `hcl:"crl,block"`
}

type provisionerBlock struct {
	Name       string   `hcl:"name,label"`
	Kind       string   `hcl:"kind"`
	Authority  string   `hcl:"authority,optional"`
	DNS        []string `hcl:"dns,optional"`
	IP         []string `hcl:"ip,optional"`
	URI        []string `hcl:"uri,optional"`
	Email      []string `hcl:"email,optional"`
	CommonName []string `hcl:"common_name,optional"`
	DefaultTTL string   `hcl:"default_ttl,optional"`
	MaxTTL     string   `hcl:"max_ttl,optional"`
	KeyTypes   []string `hcl:"key_types,optional"`
	RSAMinBits int      `hcl:"rsa_min_bits,optional"`
	EKU        string   `hcl:"eku,optional"`
	RenewGrace string   `hcl:"renew_grace,optional"`
	JWKFile    string   `hcl:"jwk_file,optional"`
	// AllowWildcard permits wildcard names that dns covers.
	AllowWildcard bool `hcl:"allow_wildcard,optional"`
	// RevokeOnRenew: a renewal revokes the certificate it replaces.
	RevokeOnRenew bool `hcl:"revoke_on_renew,optional"`
	// Kind acme: new accounts need an external account binding; the
	// challenge types offered (default all three).
	// ServerKeygen: EST clients may have the CA make their keys.
	ServerKeygen bool     `hcl:"server_keygen,optional"`
	RequireEAB   bool     `hcl:"require_eab,optional"`
	Challenges   []string `hcl:"challenges,optional"`
}

// Load reads and checks an HCL config file.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src)
}

// Parse reads an HCL config from src; filename is for messages. It reads no
// other file.
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
		APIListen: f.API.Listen, APIAdvertise: f.API.Advertise, APIPublicURLs: f.API.PublicURLs,
		TLSCertFile: f.API.TLSCertFile, TLSKeyFile: f.API.TLSKeyFile, TLSProvisioner: f.API.TLSProvisioner,
		RaftListen: f.Raft.Listen, RaftAdvertise: f.Raft.Advertise,
		Bootstrap: f.Cluster.Bootstrap, Join: f.Cluster.Join,
		JoinSecret: f.Cluster.JoinSecret, JoinSecretFile: f.Cluster.JoinSecretFile, ClusterCAKey: f.Cluster.CAKey,
		CAFile: f.Cluster.CAFile, CAFingerprint: f.Cluster.CAFingerprint, BootstrapAdminTokenFile: f.BootstrapAdminTokenFile,
		LogLevel: f.LogLevel, file: &f,
	}
	if f.LogLevel != "" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(f.LogLevel)); err != nil {
			return nil, fmt.Errorf("config: log_level %q: debug, info, warn or error", f.LogLevel)
		}
	}
	if f.HTTP != nil {
		c.HTTPListen = f.HTTP.Listen
	}
	c.AllowInsecureSoftSigner = f.AllowInsecureSoftSigner
	c.BootstrapExpect, c.Voters = f.Cluster.BootstrapExpect, f.Cluster.Voters
	var derr error
	if c.DeadServerCleanup, derr = duration("cluster: dead_server_cleanup", f.Cluster.DeadServerCleanup); derr != nil {
		return nil, derr
	}
	if c.ServerStabilization, derr = duration("cluster: server_stabilization_time", f.Cluster.Stabilization); derr != nil {
		return nil, derr
	}
	if g := f.Gossip; g != nil {
		c.GossipListen, c.GossipAdvertise, c.GossipKey, c.GossipKeyFile, c.RetryJoin = g.Listen, g.Advertise, g.Key, g.KeyFile, g.RetryJoin
	}
	if f.Audit != nil {
		c.AuditFile = f.Audit.File
	}
	if b := f.Snapshot; b != nil {
		if c.SnapshotInterval, derr = duration("snapshot: interval", b.Interval); derr != nil {
			return nil, derr
		}
		if c.SnapshotInterval < time.Minute {
			return nil, errors.New("config: snapshot: interval must be at least 1m")
		}
		c.SnapshotDestination = b.Destination
		if !strings.HasPrefix(b.Destination, "file:///") && !strings.HasPrefix(b.Destination, "s3://") {
			return nil, fmt.Errorf("config: snapshot: destination %q is not file:///dir or s3://bucket/prefix", b.Destination)
		}
	}
	c.ProxyProtocolFrom = f.API.ProxyProtocolFrom
	c.MaxConnsPerClient, c.MaxIdleConnsPerClient = f.API.MaxConnsPerClient, f.API.MaxIdlePerClient
	if f.Admin != nil {
		c.AdminListen = f.Admin.Listen
	}
	if f.Metrics != nil {
		c.MetricsTokenFile = f.Metrics.BearerTokenFile
	}
	if f.Profiling != nil && f.Profiling.Pyroscope != nil {
		py := f.Profiling.Pyroscope
		c.Pyroscope = &PyroscopeConfig{ServerAddress: py.ServerAddress, ApplicationName: py.ApplicationName}
		var err error
		if c.Pyroscope.UploadRate, err = duration("profiling.pyroscope: upload_rate", py.UploadRate); err != nil {
			return nil, err
		}
	}
	if b := f.Signer; b != nil {
		c.Signer = signer.Options{Concurrency: b.Concurrency, Rate: b.Rate, Burst: b.Burst,
			NewKeyPolicyFrom: b.NewKeyPolicyFrom, NewKeyTags: b.NewKeyTags}
		if b.NewKeyPolicyFrom != "" && !strings.HasPrefix(b.NewKeyPolicyFrom, "awskms:") {
			return nil, errors.New("config: signer: new_key_policy_from must be an awskms: key URI")
		}
		var err error
		if c.Signer.Timeout, err = duration("signer: timeout", b.Timeout); err != nil {
			return nil, err
		}
		if c.Signer.MaxWait, err = duration("signer: max_wait", b.MaxWait); err != nil {
			return nil, err
		}
		if b.Concurrency < 0 || b.Rate < 0 || b.Burst < 0 {
			return nil, errors.New("config: signer: concurrency, rate and burst must not be negative")
		}
	}
	if o := f.OCSP; o != nil {
		if o.Rate < 0 || o.Burst < 0 || o.CacheMB < 0 {
			return nil, errors.New("config: ocsp: rate, burst and cache_mb must not be negative")
		}
		c.OCSP = OCSPConfig{Rate: o.Rate, Burst: o.Burst, CacheBytes: o.CacheMB << 20}
	}
	if b := f.ACME; b != nil {
		for _, r := range b.Resolvers {
			if _, _, err := net.SplitHostPort(r); err != nil {
				return nil, fmt.Errorf("config: acme: resolvers: %q must be host:port", r)
			}
		}
		if b.HTTP01Port < 0 || b.HTTP01Port > 65535 || b.TLSALPN01Port < 0 || b.TLSALPN01Port > 65535 {
			return nil, errors.New("config: acme: http01_port and tlsalpn01_port must be ports (1-65535)")
		}
		if b.Perspectives < 0 || b.Perspectives > 5 {
			return nil, errors.New("config: acme: perspectives must be 1 to 5 (zones that must see a challenge's answer)")
		}
		c.ACME = acme.ValidatorConfig{Resolvers: b.Resolvers, HTTP01Port: b.HTTP01Port, TLSALPNPort: b.TLSALPN01Port,
			Perspectives: b.Perspectives, Zone: b.Zone}
	}
	if b := f.CRL; b != nil {
		var err error
		if c.CRLInterval, err = duration("crl: interval", b.Interval); err != nil {
			return nil, err
		}
		if c.CRLInterval < 0 || c.CRLInterval > time.Hour {
			return nil, errors.New("config: crl: interval must be between 0 (the default) and 1h")
		}
	}
	if b := f.Storage; b != nil {
		switch b.ExpiredRetention {
		case "":
		case "forever":
			c.KeepExpired = true
		default:
			var err error
			if c.Retention, err = duration("storage: expired_retention", b.ExpiredRetention); err != nil {
				return nil, err
			}
			if c.Retention < time.Hour {
				return nil, errors.New(`config: storage: expired_retention must be at least 1h, or "forever"`)
			}
		}
		switch b.AuditRetention {
		case "":
		case "forever":
			c.KeepAudit = true
		default:
			var err error
			if c.AuditRetention, err = duration("storage: audit_retention", b.AuditRetention); err != nil {
				return nil, err
			}
			if c.AuditRetention < time.Hour {
				return nil, errors.New(`config: storage: audit_retention must be at least 1h, or "forever"`)
			}
		}
		c.Archive = b.Archive
		if c.Archive != "" && !strings.HasPrefix(c.Archive, "file:///") && !strings.HasPrefix(c.Archive, "s3://") {
			return nil, fmt.Errorf("config: storage: archive %q is not file:///dir or s3://bucket/prefix", c.Archive)
		}
		if c.Archive != "" && c.KeepExpired && c.KeepAudit {
			return nil, errors.New(`config: storage: an archive takes what retention removes; with expired_retention and audit_retention "forever" nothing is`)
		}
	}
	if b := f.LineageLimits; b != nil {
		if b.RenewalsPerMinute < 0 || b.RenewalBurst < 0 || b.HolderRevocationsPerMinute < 0 || b.HolderRevocationBurst < 0 {
			return nil, errors.New("config: lineage_limits: rates and bursts must not be negative")
		}
		c.LineageLimits = authority.LineageLimits{RenewalsPerMinute: b.RenewalsPerMinute, RenewalBurst: b.RenewalBurst,
			HolderRevocationsPerMinute: b.HolderRevocationsPerMinute, HolderRevocationBurst: b.HolderRevocationBurst}
	}
	for _, a := range f.Authorities {
		ac := &AuthorityConfig{Name: a.Name, RootFile: a.RootFile, ChainFile: a.ChainFile, Key: a.Key,
			BaseURL: a.BaseURL, OCSPResponderKey: a.OCSPResponderKey, SCEPRAKey: a.SCEPRAKey, RootKey: a.RootKey}
		if a.CRL != nil {
			var err error
			what := fmt.Sprintf("authority %q crl", a.Name)
			if ac.CRL.Validity, err = duration(what+" validity", a.CRL.Validity); err == nil {
				ac.CRL.Refresh, err = duration(what+" refresh", a.CRL.Refresh)
			}
			if err != nil {
				return nil, err
			}
			if ac.CRL.Shards = a.CRL.Shards; ac.CRL.Shards < 0 || ac.CRL.Shards > authority.MaxCRLShards {
				return nil, fmt.Errorf("config: %s shards: between 0 and %d", what, authority.MaxCRLShards)
			}
		}
		c.Authorities = append(c.Authorities, ac)
	}
	for _, p := range f.Provisioners {
		pc, err := provisionerFrom(p)
		if err != nil {
			return nil, err
		}
		c.Provisioners = append(c.Provisioners, pc)
	}
	return c, c.Validate()
}

func provisionerFrom(p provisionerBlock) (*ProvisionerConfig, error) {
	pc := &ProvisionerConfig{JWKFile: p.JWKFile, Provisioner: fsm.Provisioner{
		Name: p.Name, Kind: p.Kind, Authority: p.Authority,
		Policy: fsm.Policy{DNS: p.DNS, IP: p.IP, URI: p.URI, Email: p.Email, CommonName: p.CommonName,
			KeyTypes: p.KeyTypes, RSAMinBits: p.RSAMinBits, EKU: p.EKU, AllowWildcard: p.AllowWildcard,
			RevokeOnRenew: p.RevokeOnRenew, ServerKeygen: p.ServerKeygen},
	}}
	if p.RequireEAB || len(p.Challenges) > 0 {
		if p.Kind != fsm.KindACME {
			return nil, fmt.Errorf("config: provisioner %s: require_eab and challenges are for kind acme only", p.Name)
		}
		pc.ACME = &fsm.ACMEOptions{RequireEAB: p.RequireEAB, Challenges: p.Challenges}
	}
	what := "provisioner " + p.Name + ": "
	var err error
	if pc.Policy.DefaultTTL, err = duration(what+"default_ttl", p.DefaultTTL); err != nil {
		return nil, err
	}
	if pc.Policy.MaxTTL, err = duration(what+"max_ttl", p.MaxTTL); err != nil {
		return nil, err
	}
	if pc.Policy.RenewGrace, err = duration(what+"renew_grace", p.RenewGrace); err != nil {
		return nil, err
	}
	if err := authority.CheckPolicy(&pc.Policy); err != nil {
		return nil, fmt.Errorf("config: %s%v", what, err)
	}
	if (p.Kind == fsm.KindJWK) != (p.JWKFile != "") {
		return nil, fmt.Errorf("config: %sjwk_file is required for kind jwk, and only for it", what)
	}
	return pc, nil
}

func duration(what, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("config: %s %q is not a duration such as \"24h\"", what, s)
	}
	return d, nil
}

const minSecretLen = 16

// gossipKeys decodes the gossip keyring: the key, or the keys of key_file,
// one per line, the first of which encrypts (the primary) while every one
// decrypts, so that a key can be rotated without a stop (SIGHUP reads the
// file again). Blank lines and lines starting with # are skipped.
func (c *Config) gossipKeys() (primary []byte, others [][]byte, err error) {
	lines := []string{c.GossipKey}
	if c.GossipKey == "" {
		b, err := os.ReadFile(c.GossipKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("config: gossip key_file: %w", err)
		}
		lines = strings.Split(string(b), "\n")
	}
	var keys [][]byte
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(l)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, nil, errors.New("config: a gossip key must be base64 of 16, 24 or 32 bytes (quorumca keygen makes one)")
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("config: gossip key_file holds no key")
	}
	return keys[0], keys[1:], nil
}

// caFingerprint decodes cluster.ca_fingerprint (nil if unset).
func (c *Config) caFingerprint() ([]byte, error) {
	if c.CAFingerprint == "" {
		return nil, nil
	}
	s := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(c.CAFingerprint), "sha256:"), ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("config: cluster.ca_fingerprint must be a SHA-256 in hex (as /v1/health shows it)")
	}
	return b, nil
}

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

// metricsToken reads the bearer token for /v1/metrics ("" for none).
// Errors name the file, never what it holds.
func (c *Config) metricsToken() (string, error) {
	if c.MetricsTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.MetricsTokenFile)
	if err != nil {
		return "", fmt.Errorf("config: metrics bearer_token_file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < minSecretLen {
		return "", fmt.Errorf("config: the metrics token in %s must be at least %d characters", c.MetricsTokenFile, minSecretLen)
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
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("config: set both api.tls_cert_file and api.tls_key_file, or neither")
	case c.TLSCertFile == "" && c.TLSProvisioner == "":
		return errors.New("config: api needs tls_cert_file and tls_key_file, or tls_provisioner (a certificate issued by the cluster)")
	case c.ClusterCAKey == "":
		return errors.New("config: cluster.ca_key is required: the key that certifies nodes for their mutual TLS")
	case strings.HasPrefix(c.ClusterCAKey, "softkey:") && !c.AllowInsecureSoftSigner:
		//lint:ignore ST1005 the message ends with a URI scheme, not punctuation
		return errors.New("config: cluster.ca_key is a softkey: (a file): set allow_insecure_soft_signer = true, or use awskms: or pkcs11:")
	case (c.JoinSecret == "") == (c.JoinSecretFile == ""):
		return errors.New("config: set one of cluster.join_secret and cluster.join_secret_file")
	case c.JoinSecret != "" && len(c.JoinSecret) < minSecretLen:
		return fmt.Errorf("config: the join secret must be at least %d characters", minSecretLen)
	case c.Bootstrap && (len(c.Join) > 0 || c.BootstrapExpect > 0):
		return errors.New("config: bootstrap = true forms a cluster alone; do not combine it with join or bootstrap_expect")
	case !c.Bootstrap && len(c.Join) == 0 && c.BootstrapExpect == 0 && len(c.RetryJoin) == 0:
		return errors.New("config: set cluster.bootstrap_expect (with gossip), bootstrap = true on the first node, or join = [...] on the others")
	case (c.BootstrapExpect > 0 || len(c.RetryJoin) > 0) && c.GossipListen == "":
		return errors.New("config: bootstrap_expect and retry_join need a gossip block")
	case c.GossipListen != "" && (c.GossipKey == "") == (c.GossipKeyFile == ""):
		return errors.New("config: gossip needs one of key and key_file (gossip is always encrypted)")
	case c.Voters != 0 && c.Voters != 3 && c.Voters != 5:
		return errors.New("config: cluster.voters must be 3 or 5")
	case c.BootstrapExpect < 0 || c.BootstrapExpect > 7:
		return errors.New("config: cluster.bootstrap_expect must be 1-7")
	}
	switch {
	case c.MaxConnsPerClient < 0 || c.MaxIdleConnsPerClient < 0:
		return errors.New("config: api: max_connections_per_client and max_idle_connections_per_client must not be negative")
	case c.MaxConnsPerClient > 0 && c.MaxIdleConnsPerClient > c.MaxConnsPerClient:
		return errors.New("config: api: max_idle_connections_per_client must not exceed max_connections_per_client")
	}
	for _, cidr := range c.ProxyProtocolFrom {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return fmt.Errorf("config: api.proxy_protocol_from: %q is not a CIDR", cidr)
		}
	}
	for _, p := range c.APIPublicURLs {
		u, err := url.Parse(p)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return fmt.Errorf("config: api.public_urls: %q must be https://host[:port], as clients address the API", p)
		}
	}
	for _, j := range c.Join {
		u, err := url.Parse(j)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("config: join address %q must be https://host:port", j)
		}
	}
	if _, err := c.caFingerprint(); err != nil {
		return err
	}
	names := map[string]bool{}
	for _, a := range c.Authorities {
		if a.Name == "" || a.RootFile == "" || a.ChainFile == "" || a.Key == "" {
			return fmt.Errorf("config: authority %q needs root_file, chain_file and key", a.Name)
		}
		if names[a.Name] {
			return fmt.Errorf("config: authority %q is defined twice", a.Name)
		}
		names[a.Name] = true
		soft := false
		for _, k := range []string{a.Key, a.OCSPResponderKey, a.SCEPRAKey} {
			soft = soft || strings.HasPrefix(k, "softkey:")
		}
		if soft && !c.AllowInsecureSoftSigner {
			return fmt.Errorf("config: authority %q: softkey: keys are files on the node, for development only; "+
				"use awskms: or pkcs11:, or set allow_insecure_soft_signer = true", a.Name)
		}
		if err := authority.CheckBaseURL(a.BaseURL); err != nil {
			return fmt.Errorf("config: authority %q: %v", a.Name, err)
		}
	}
	for _, p := range c.Provisioners {
		if p.Authority == "" && len(c.Authorities) > 0 {
			p.Authority = c.Authorities[0].Name
		}
		if !names[p.Authority] && c.Bootstrap {
			return fmt.Errorf("config: provisioner %q names unknown authority %q", p.Name, p.Authority)
		}
	}
	return nil
}
