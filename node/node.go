// Package node assembles one CA node: state machine, cluster membership,
// authority, signers and the HTTPS API.
package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/api"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/archive"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/internal/keyrate"
	"github.com/quorumca/quorumca/internal/logbridge"
	"github.com/quorumca/quorumca/signer"
	_ "github.com/quorumca/quorumca/signer/awskms" // key backends, by URI scheme
	_ "github.com/quorumca/quorumca/signer/pkcs11"
	_ "github.com/quorumca/quorumca/signer/soft"
)

// Node is a running CA node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	fsm     *fsm.FSM
	ocsp    *authority.OCSPStore // signed OCSP answers: this node's own, not replicated
	cluster *cluster.Cluster
	acme    *acme.Service
	// makingProvisioners: this process's bootstrap began creating the
	// configured provisioners (bootstrapProvisioners).
	makingProvisioners atomic.Bool
	ca                 *authority.CA
	signers            *signer.Cache
	listener           net.Listener
	http               *http.Server

	publicListener net.Listener // plain HTTP: CRLs and OCSP
	public         *http.Server
	adminListener  net.Listener // plain HTTP: pprof, metrics
	adminHTTP      *http.Server
	audit          *auditSink
	archive        archive.Store // where retention archives records; nil: none
	snapshots      archive.Store // where the leader writes scheduled snapshots; nil: none
	snapMetrics    *snapshotMetrics
	apiConns       *connLimiter
	refusals       *refusalSampler
	profiler       interface{ Stop() error }

	// The API's certificate, served to new handshakes; Reload replaces it
	// from the files (under reloadMu, which also guards their paths).
	apiCert           atomic.Pointer[tls.Certificate]
	issuedAPICert     atomic.Pointer[tls.Certificate] // api.tls_provisioner's, preferred (apicert.go)
	placeholder       atomic.Bool                     // apiCert is the self-signed placeholder
	apiCertRenewAt    atomic.Int64                    // Unix ns: when issuedAPICert is due
	reloadMu          sync.Mutex
	certFile, keyFile string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens state, starts Raft and serves the API. It returns once the
// API listens; forming or joining the cluster continues in the background.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), refusals: newRefusalSampler(),
		signers: &signer.Cache{Options: cfg.Signer, AllowInsecure: cfg.AllowInsecureSoftSigner}}
	if cfg.AllowInsecureSoftSigner {
		n.log.Warn("allow_insecure_soft_signer is set: CA keys may be files on this node; never do this in production")
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) start() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	n.certFile, n.keyFile = cfg.TLSCertFile, cfg.TLSKeyFile
	if n.certFile != "" {
		if err := n.loadAPICert(); err != nil {
			return fmt.Errorf("node: api tls: %w", err)
		}
	}
	if cfg.CAFile != "" {
		n.log.Warn("cluster.ca_file is no longer used: nodes verify each other against the cluster CA (cluster.ca_key) alone; remove it")
	}
	pin, err := cfg.caFingerprint()
	if err != nil {
		return err
	}
	secret, err := cfg.joinSecret()
	if err != nil {
		return err
	}
	var gossip *cluster.GossipConfig
	if cfg.GossipListen != "" {
		key, others, err := cfg.gossipKeys()
		if err != nil {
			return err
		}
		gossip = &cluster.GossipConfig{Bind: cfg.GossipListen, Advertise: cfg.GossipAdvertise, Key: key, OtherKeys: others,
			RetryJoin: cfg.RetryJoin, BootstrapExpect: cfg.BootstrapExpect, Voters: cfg.Voters,
			DeadServerCleanup: cfg.DeadServerCleanup, Stabilization: cfg.ServerStabilization, Fast: cfg.GossipFast}
	}
	if n.fsm, err = fsm.Open(filepath.Join(cfg.DataDir, "state.db")); err != nil {
		return err
	}
	if n.ocsp, err = authority.OpenOCSPStore(filepath.Join(cfg.DataDir, "ocsp.db"), authority.OCSPStoreOptions{Now: cfg.Now, Logger: n.log}); err != nil {
		return err
	}
	if n.listener, err = net.Listen("tcp", cfg.APIListen); err != nil {
		return fmt.Errorf("node: api listen: %w", err)
	}
	apiListener, err := proxyListener(n.listener, cfg.ProxyProtocolFrom)
	if err != nil {
		return err
	}
	advertise := cfg.APIAdvertise
	if advertise == "" {
		advertise = n.listener.Addr().String()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	caKey, err := n.signers.Get(n.ctx, cfg.ClusterCAKey)
	if err != nil {
		// Then the node proves the join secret to a member for its certificate.
		n.log.Warn("cannot use the cluster CA key; will ask a member for a node certificate", "key", cfg.ClusterCAKey, "err", err)
		caKey = nil
	}
	n.cluster, err = cluster.Open(cluster.Config{
		NodeID: cfg.NodeName, Dir: filepath.Join(cfg.DataDir, "raft"),
		RaftBind: cfg.RaftListen, RaftAdvertise: cfg.RaftAdvertise, APIAdvertise: advertise,
		Bootstrap: cfg.Bootstrap, Join: cfg.Join, Secret: secret, CAFingerprint: pin, Refused: n.refused,
		Timing: cfg.Timing, HoldTimeout: cfg.HoldTimeout, Logger: n.log, Now: cfg.Now,
		Registerer: reg, Gossip: gossip, CAKey: caKey, NodeCertTTL: cfg.NodeCertTTL,
		OpenCAKey: func(ctx context.Context) (signer.Key, error) { return n.signers.Get(ctx, cfg.ClusterCAKey) },
	}, n.fsm)
	if err != nil {
		return err
	}
	n.ca = authority.New(authority.Config{State: n.fsm, Proposer: n.cluster, Signers: n.signers, Now: cfg.Now, Logger: n.log,
		OCSPCacheBytes: cfg.OCSP.CacheBytes, OCSPStore: n.ocsp, Limits: cfg.LineageLimits})
	if cfg.Archive != "" {
		if n.archive, err = archive.Open(n.ctx, cfg.Archive); err != nil {
			return fmt.Errorf("node: storage: %w", err)
		}
	}

	if err := n.openSnapshots(n.ctx, reg); err != nil {
		return err
	}
	n.registerMetrics(reg)
	metricsToken, err := cfg.metricsToken()
	if err != nil {
		return err
	}
	publicURLs := cfg.APIPublicURLs
	if len(publicURLs) == 0 {
		publicURLs = []string{"https://" + advertise}
	}
	streams := cfg.Streams.WithDefaults()
	nonces := acme.NewNonces(cfg.NodeName, n.cluster)
	n.cluster.ServeRPC(acme.NonceRPC, nonces.ServeRedeem)
	n.acme = acme.New(acme.Config{CA: n.ca, State: n.fsm, Barrier: n.cluster, Nonces: nonces,
		Validator: acme.NewValidator(cfg.ACME), Peers: n.cluster, Node: cfg.NodeName, Logger: n.log, Now: cfg.Now})
	n.cluster.ServeRPC(acme.ValidateRPC, n.acme.ServeValidate)
	srv := &api.Server{ACME: n.acme, CA: n.ca, Cluster: n.cluster, Internal: n.cluster.Handler(), Operator: n.cluster, Registry: reg, Logger: n.log,
		Refused: n.refused, PublicURLs: publicURLs, OCSPLimit: cfg.OCSP.limiter(), Streams: streams, CRLMaxAge: cmp.Or(cfg.CRLInterval, DefaultCRLInterval),
		MetricsToken: metricsToken, APICertProblem: n.apiCertProblem}
	if cfg.TLSProvisioner != "" {
		if err := n.startAPICert(apiHosts(advertise, publicURLs), reg); err != nil {
			return err
		}
	}
	n.apiConns = newConnLimiter("api", cfg.MaxConnsPerClient, cfg.MaxIdleConnsPerClient, reg)
	if cfg.AuditFile != "" {
		if n.audit, err = openAuditSink(cfg.AuditFile); err != nil {
			return err
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.audit.follow(n.ctx, n.fsm) }()
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.summarizeRefusals(n.ctx) }()
	n.http = &http.Server{
		Handler: srv.Routes(),
		// Other nodes ask for their own server name and get this node's
		// node certificate (cluster.ServerTLS); clients get the API's.
		TLSConfig: n.cluster.ServerTLS(&tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.servedAPICert(), nil },
			MinVersion:     tls.VersionTLS12,
			// Clients may present a certificate (renewal, revocation by its
			// holder). The authorities can change at run time, so the
			// authority package checks it, not the handshake.
			ClientAuth: tls.RequestClientCert,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// net/http's own complaints (TLS handshake errors from scanners,
		// mostly) at debug level.
		ErrorLog: logbridge.Logger(n.log.With("component", "http"), slog.LevelDebug),
		// Streams (audit follows, snapshot downloads) lift WriteTimeout
		// and give each write its own deadline (api/stream.go); an HTTP/2
		// connection whose client stops reading altogether is closed.
		HTTP2:     &http.HTTP2Config{WriteByteTimeout: streams.WriteTimeout},
		ConnState: n.apiConns.connState,
	}
	n.serve(func() error { return n.http.ServeTLS(n.apiConns.wrap(apiListener), "", "") })
	if cfg.HTTPListen != "" {
		if n.publicListener, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			return fmt.Errorf("node: http listen: %w", err)
		}
		pl, err := proxyListener(n.publicListener, cfg.ProxyProtocolFrom)
		if err != nil {
			return err
		}
		httpConns := newConnLimiter("http", cfg.MaxConnsPerClient, cfg.MaxIdleConnsPerClient, reg)
		n.public = &http.Server{Handler: srv.PublicRoutes(), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, ErrorLog: n.http.ErrorLog,
			ConnState: httpConns.connState}
		n.serve(func() error { return n.public.Serve(httpConns.wrap(pl)) })
	}
	if cfg.AdminListen != "" {
		if n.adminListener, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("node: admin listen: %w", err)
		}
		n.adminHTTP = n.adminServer(reg, metricsToken)
		n.serve(func() error { return n.adminHTTP.Serve(n.adminListener) })
	}
	if err := n.startProfiling(); err != nil {
		return fmt.Errorf("node: profiling: %w", err)
	}

	n.cluster.OnLeader(n.leaderLoop)
	n.startRecovery()
	switch {
	case cfg.Bootstrap:
		n.wg.Add(1)
		go n.bootstrapLoop()
	case cfg.BootstrapExpect > 0:
		// Formed by gossip: whichever node leads creates what the config
		// names (idempotent, so a later leader finds it done).
		n.cluster.OnLeader(func(ctx context.Context) { n.bootstrapTasks(ctx) })
	}
	n.log.Info("node started", "api", advertise, "raft", cfg.RaftListen, "bootstrap", cfg.Bootstrap,
		"cluster_ca_fingerprint", n.cluster.CAFingerprint())
	return nil
}

// refused logs a request this node refused, with the rule that refused it,
// if the sampler lets it through (refusals.go). Client-chosen text is
// bounded and escaped.
func (n *Node) refused(r *http.Request, status int, code, msg string) {
	if !n.refusals.allow(r.RemoteAddr, code) {
		return
	}
	line := refusal{Refused: true, Time: time.Now().UTC(), Node: n.cfg.NodeName, Remote: r.RemoteAddr,
		Method: api.LogText(cutMethod(r.Method)), Path: api.LogPath(r), Status: status, Code: code, Message: api.LogText(msg)}
	lvl := slog.LevelInfo
	if status >= 500 {
		lvl = slog.LevelWarn
	}
	n.log.Log(r.Context(), lvl, "request refused", "component", "audit", "remote", line.Remote,
		"method", line.Method, "path", line.Path, "status", status, "code", code, "message", line.Message)
	if n.audit != nil {
		n.audit.write(line)
	}
}

func (n *Node) serve(run func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("server stopped", "err", err)
		}
	}()
}

// bootstrapLoop creates the configured authority and the first admin token
// once the cluster accepts writes. It runs on the bootstrapping node at every
// start and does nothing once both exist, so a crash between bootstrap and
// these writes is repaired on restart.
func (n *Node) bootstrapLoop() {
	defer n.wg.Done()
	n.bootstrapTasks(n.ctx)
}

func (n *Node) bootstrapTasks(ctx context.Context) {
	ctx = authority.WithOrigin(ctx, "node:"+n.cfg.NodeName+" bootstrap", "")
	for {
		err := n.bootstrapOnce(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		n.log.Warn("bootstrap: will retry", "err", err)
		if !backoff.Sleep(ctx, time.Second) {
			return
		}
	}
}

func (n *Node) bootstrapOnce(ctx context.Context) error {
	if err := n.cluster.Barrier(ctx); err != nil {
		return err
	}
	for _, ac := range n.cfg.Authorities {
		if _, err := n.fsm.Authority(ac.Name); !errors.Is(err, fsm.ErrNotFound) {
			if err := n.updateAuthority(ctx, ac); err != nil {
				return err
			}
			continue
		}
		a, err := loadAuthority(ac)
		if err != nil {
			return err
		}
		if err := n.ca.PutAuthority(ctx, *a); err != nil {
			return fmt.Errorf("create authority %s: %w", ac.Name, err)
		}
		n.log.Info("authority created", "name", ac.Name, "key", ac.Key)
		if err := n.updateAuthority(ctx, ac); err != nil {
			return err
		}
		for _, d := range []struct{ role, key, what, without string }{
			{fsm.RoleOCSP, ac.OCSPResponderKey, "delegated OCSP responder", "the issuing key signs OCSP answers"},
			{fsm.RoleSCEP, ac.SCEPRAKey, "SCEP RA", "SCEP is not served for it"},
		} {
			if d.key == "" {
				continue
			}
			if _, err := n.ca.SetDelegate(ctx, d.role, authority.DelegateRequest{Name: ac.Name, Key: authority.KeySpec{URI: d.key}}); err != nil {
				// The authority stands; an operator sets the key up later.
				n.log.Warn(d.what+" not set up; "+d.without, "authority", ac.Name, "err", err)
			} else {
				n.log.Info(d.what+" set up", "authority", ac.Name, "key", d.key)
			}
		}
	}
	if err := n.bootstrapProvisioners(ctx); err != nil {
		return err
	}
	if n.fsm.AdminCount() > 0 {
		return nil
	}
	tok, err := n.ca.CreateAdmin(ctx, "bootstrap", authority.RoleAdmin)
	if err != nil {
		return fmt.Errorf("create bootstrap admin: %w", err)
	}
	path := n.cfg.BootstrapAdminTokenFile
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, "bootstrap-admin.token")
	}
	if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write bootstrap admin token: %w", err)
	}
	n.log.Info("bootstrap admin token written; revoke it once real admins exist", "file", path)
	return nil
}

// bootstrapProvisioners creates the configured provisioners, or a default
// one, when the cluster has none yet. Later changes go through the admin API.
//
// A creation may be refused for a while (a new cluster's leader does not
// yet know that every server reads a command's log format): the retry in
// this process goes on with those not made yet, so a bootstrap never ends
// with some of the configured provisioners only.
func (n *Node) bootstrapProvisioners(ctx context.Context) error {
	ps, err := n.fsm.Provisioners()
	if err != nil || (len(ps) > 0 && !n.makingProvisioners.Load()) {
		return err
	}
	n.makingProvisioners.Store(true)
	made := map[string]bool{}
	for _, p := range ps {
		made[p.Name] = true
	}
	if len(n.cfg.Provisioners) == 0 {
		if len(n.cfg.Authorities) == 0 {
			n.log.Warn("no authority configured: create one with 'quorumca operator authority create' or import one")
			return nil
		}
		return n.ca.EnsureDefaultProvisioner(ctx, n.cfg.Authorities[0].Name)
	}
	for _, pc := range n.cfg.Provisioners {
		p := pc.Provisioner
		if made[p.Name] {
			continue
		}
		if pc.JWKFile != "" {
			b, err := os.ReadFile(pc.JWKFile)
			if err != nil {
				return fmt.Errorf("provisioner %s: %w", p.Name, err)
			}
			p.JWK = b
		}
		if err := n.ca.PutProvisioner(ctx, p, 0); err != nil && !errors.Is(err, fsm.ErrVersionMismatch) {
			return fmt.Errorf("create provisioner %s: %w", p.Name, err)
		}
		n.log.Info("provisioner created", "name", p.Name, "kind", p.Kind, "authority", p.Authority)
	}
	return nil
}

// updateAuthority sets what the config says of an existing authority: its
// base URL, root key and CRL settings (what it leaves out stays). A cluster
// that does not read them yet (a rolling upgrade) gets them at a later
// start.
func (n *Node) updateAuthority(ctx context.Context, ac *AuthorityConfig) error {
	req := authority.UpdateRequest{Name: ac.Name}
	if ac.BaseURL != "" {
		req.BaseURL = &ac.BaseURL
	}
	if ac.RootKey != "" {
		req.RootKey = &ac.RootKey
	}
	if ac.CRL.Validity != 0 || ac.CRL.Refresh != 0 {
		req.CRL = &ac.CRL
	}
	if ac.CRL.Shards != 0 {
		req.CRLShards = &ac.CRL.Shards
	}
	// An intermediate signed again for the same key (other links or
	// dates) in chain_file replaces the one the authority was made with.
	if a, err := loadAuthority(ac); err == nil {
		cur, err := n.fsm.Authority(ac.Name)
		if c, perr := x509.ParseCertificate(a.Issuers[0].Chain[0]); err == nil && perr == nil && cur.Issuer(authority.IssuerID(c)) != nil {
			req.Chain = a.Issuers[0].Chain
		}
	}
	_, err := n.ca.UpdateAuthority(ctx, req)
	switch {
	case errors.Is(err, fsm.ErrUpgrading):
		n.log.Warn("authority settings not applied: a server runs an older release", "authority", ac.Name)
		return nil
	case errors.Is(err, authority.ErrInvalidRequest):
		n.log.Error("authority settings in the config refused; fix the config", "authority", ac.Name, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("authority %s settings: %w", ac.Name, err)
	}
	return nil
}

func loadAuthority(ac *AuthorityConfig) (*fsm.Authority, error) {
	rootPEM, err := os.ReadFile(ac.RootFile)
	if err != nil {
		return nil, err
	}
	roots, err := authority.ParseCertsPEM(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ac.RootFile, err)
	}
	chainPEM, err := os.ReadFile(ac.ChainFile)
	if err != nil {
		return nil, err
	}
	chain, err := authority.ParseCertsPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ac.ChainFile, err)
	}
	iss := fsm.Issuer{KeyURI: ac.Key}
	for _, c := range chain {
		if !c.Equal(roots[0]) {
			iss.Chain = append(iss.Chain, c.Raw)
		}
	}
	return &fsm.Authority{Name: ac.Name, Root: roots[0].Raw, Issuers: []fsm.Issuer{iss}, BaseURL: ac.BaseURL}, nil
}

// DefaultCRLInterval is how often, at most, the leader re-signs a CRL that
// lacks a revocation.
const DefaultCRLInterval = 5 * time.Second

// leaderLoop runs while this node leads: it re-signs each CRL that lacks a
// revocation once per CRL interval, keeps every CRL and OCSP responder
// certificate current, drops expired tokens, and warns when no admin is
// usable. It is the one place CRLs are signed after revocations, so they
// take their numbers in turn.
func (n *Node) leaderLoop(ctx context.Context) {
	ctx = authority.WithOrigin(ctx, "node:"+n.cfg.NodeName, "")
	interval := n.cfg.CRLInterval
	if interval <= 0 {
		interval = DefaultCRLInterval
	}
	stale := time.NewTicker(interval)
	defer stale.Stop()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	refreshStale := func() {
		if err := n.ca.RefreshStaleCRLs(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("stale CRL not re-signed; retried next interval", "err", err)
		}
	}
	periodic := func() {
		if err := n.ca.RefreshCRLs(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("CRL refresh failed", "err", err)
		}
		if err := n.ca.PruneTokens(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("token prune failed", "err", err)
		}
		if err := n.ca.PruneACME(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("ACME prune failed", "err", err)
		}
		if err := n.ca.RefreshDelegates(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("OCSP responder renewal failed", "err", err)
		}
		n.warnWithoutUsableAdmin(ctx)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if !n.cfg.KeepExpired || !n.cfg.KeepAudit {
		wg.Go(func() { n.retentionLoop(ctx) })
	}
	if n.snapshots != nil {
		wg.Go(func() { n.snapshotLoop(ctx) })
	}
	refreshStale()
	periodic()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stale.C:
			refreshStale()
		case <-t.C:
			periodic()
		}
	}
}

// retentionLoop, while this node leads, archives and removes the records
// of certificates past their retention, and cuts audit entries past
// theirs: every RetentionInterval, batch after batch until none is left,
// so a backlog (retention turned on for a large state) drains without
// waiting a minute per batch, while issuance goes on between the batches.
func (n *Node) retentionLoop(ctx context.Context) {
	t := time.NewTicker(cmp.Or(n.cfg.RetentionInterval, time.Minute))
	defer t.Stop()
	warned := false
	for {
		if !n.cfg.KeepExpired {
			retention := cmp.Or(n.cfg.Retention, authority.DefaultRetention)
			n.drain(ctx, "records of expired certificates", fsm.MaxPruneBatch, func() (int, error) {
				return n.ca.PruneExpired(ctx, retention, n.archive)
			})
		}
		if !n.cfg.KeepAudit {
			retention := cmp.Or(n.cfg.AuditRetention, authority.DefaultAuditRetention)
			key, err := n.signers.Get(ctx, n.cfg.ClusterCAKey)
			switch {
			case err != nil && !warned && ctx.Err() == nil:
				warned = true
				n.log.Warn("audit retention: this node cannot use the cluster CA key to sign the checkpoint; audit entries are kept while it leads", "err", err)
			case err == nil:
				n.drain(ctx, "audit entries", fsm.MaxAuditCut, func() (int, error) {
					return n.ca.CutAudit(ctx, retention, n.archive, signer.CryptoSigner(ctx, key))
				})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drain runs a retention batch until one is short of full.
func (n *Node) drain(ctx context.Context, what string, full int, batch func() (int, error)) {
	for {
		removed, err := batch()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, fsm.ErrUpgrading) {
				n.log.Warn("retention: "+what+" not removed; retried next round", "err", err)
			}
			return
		}
		if removed > 0 {
			n.log.Info("retention: removed "+what, "count", removed)
		}
		if removed < full || ctx.Err() != nil {
			return
		}
	}
}

// APIAddr is the host:port the API listens on.
func (n *Node) APIAddr() string { return n.listener.Addr().String() }

// AdminAddr is the host:port of the admin listener (pprof, metrics), or "".
func (n *Node) AdminAddr() string {
	if n.adminListener == nil {
		return ""
	}
	return n.adminListener.Addr().String()
}

// HTTPAddr is the host:port of the plain-HTTP listener, or "".
func (n *Node) HTTPAddr() string {
	if n.publicListener == nil {
		return ""
	}
	return n.publicListener.Addr().String()
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// FSM exposes local state, for tests and operator tools.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Cluster exposes membership, for tests and operator tools.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// limiter is the OCSP endpoints' budget per source address.
func (o OCSPConfig) limiter() *keyrate.Limiter {
	rate, burst := o.Rate, o.Burst
	if rate <= 0 {
		rate = DefaultOCSPRate
	}
	if burst <= 0 {
		burst = DefaultOCSPBurst
	}
	return keyrate.New(rate, burst, 0)
}
