package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/node"
	"github.com/quorumca/quorumca/signer"
)

// FSMConfig sizes the state-machine scale run.
type FSMConfig struct {
	Dir     string // work directory (emptied first); bolt files and snapshots go here
	Records int    // issued-certificate records to load (default 1,000,000)
	Batch   int    // log entries per FSM batch (one bolt transaction, one fsync; default 256)
	Revoked int    // of those, revoked before the CRL is built (default 100,000)
	// CRLShards, over 1, partitions the issuer's CRL: every shard is built
	// as well as the complete CRL (when it is within one CRL's limit).
	CRLShards int
	// NoCluster skips starting nodes on the loaded state: three nodes
	// need six times the database's size on disk (a database and a
	// snapshot each). Snapshot and restore are then measured by streaming
	// (to nowhere; into a scratch database), and restarting by reopening.
	NoCluster bool
	// HeapProfile, if set, receives a heap profile taken when the load ends.
	HeapProfile string
	Progress    io.Writer
}

// MemPoint is the process's memory after Records records were loaded.
type MemPoint struct {
	Records    int     `json:"records"`
	RSSMiB     float64 `json:"rss_mib"`     // all resident memory
	AnonMiB    float64 `json:"anon_mib"`    // heap, stacks: what the process owns
	FileMiB    float64 `json:"file_mib"`    // the database's pages in the page cache, mapped
	HeapMiB    float64 `json:"go_heap_mib"` // Go heap in use after a collection
	BoltMiB    float64 `json:"bolt_mib"`    // database file size
	ApplyPerS  float64 `json:"records_per_second"`
	ElapsedSec float64 `json:"elapsed_seconds"`
}

// FSMResult is what the scale run reports.
type FSMResult struct {
	Kind          string  `json:"kind"` // "fsm"
	Records       int     `json:"records"`
	Batch         int     `json:"batch"`
	LoadSeconds   float64 `json:"load_seconds"`
	RecordsPerSec float64 `json:"records_per_second"`
	BoltMiB       float64 `json:"bolt_mib"`
	// RecordBytes is what one record and its index entries take in the
	// file (fsm.RecordBuckets' pages over the records); Buckets the pages
	// of every bucket, in bytes, when the load ended.
	RecordBytes float64          `json:"record_bytes"`
	Buckets     map[string]int64 `json:"bucket_bytes"`
	Memory      []MemPoint       `json:"memory"` // during the load, then after it ("records" repeated)

	SnapshotSeconds float64 `json:"snapshot_seconds"` // FSM → raft snapshot store
	SnapshotMiB     float64 `json:"snapshot_mib"`
	RestoreSeconds  float64 `json:"restore_seconds"` // snapshot → a new node's FSM

	Nodes           int       `json:"nodes"`
	StartSeconds    float64   `json:"cluster_start_seconds"`           // 3 nodes open their stores and elect a leader
	FailoverSeconds float64   `json:"leader_failover_seconds"`         // leader gone → a new leader commits
	JoinSeconds     float64   `json:"new_member_seconds"`              // the old leader replaced by an empty node: added → its state caught up
	OpenSeconds     float64   `json:"fsm_open_seconds"`                // reopen the loaded database
	RevokedEntries  int       `json:"crl_entries"`                     //
	RevokeSeconds   float64   `json:"revoke_seconds"`                  // applying the revocations
	CRLSeconds      float64   `json:"crl_build_seconds"`               // read revoked, sign, commit the CRL
	CRLKiB          float64   `json:"crl_kib"`                         //
	CRLRefused      string    `json:"crl_refused,omitempty"`           // the complete CRL is over one CRL's limit
	CRLShards       int       `json:"crl_shards,omitempty"`            //
	ShardsSeconds   float64   `json:"crl_shards_seconds,omitempty"`    // every shard, one after another
	ShardMaxSeconds float64   `json:"crl_shard_max_seconds,omitempty"` // the slowest shard: a revocation's CRL cost
	ShardMaxEntries int       `json:"crl_shard_max_entries,omitempty"` //
	ShardMaxKiB     float64   `json:"crl_shard_max_kib,omitempty"`     //
	ShardsKiB       float64   `json:"crl_shards_kib,omitempty"`        // all shards
	ShardsEntries   int       `json:"crl_shards_entries,omitempty"`    // all shards: each revoked record once
	Machine         Machine   `json:"machine"`                         //
	Started         time.Time `json:"started"`                         //
	Note            string    `json:"note,omitempty"`                  //
}

// WriteJSON writes r to path.
func (r *FSMResult) WriteJSON(path string) error { return writeJSON(path, r) }

// Summary prints r for a terminal.
func (r *FSMResult) Summary(w io.Writer) {
	fmt.Fprintf(w, "fsm: %d records in %.1f s (%.0f records/s, batches of %d), bolt file %.0f MiB\n",
		r.Records, r.LoadSeconds, r.RecordsPerSec, r.Batch, r.BoltMiB)
	fmt.Fprintf(w, "  a record with its index entries: %.0f bytes (", r.RecordBytes)
	for i, b := range fsm.RecordBuckets {
		fmt.Fprintf(w, "%s%s %.0f", map[bool]string{true: ", ", false: ""}[i > 0], b, float64(r.Buckets[b])/float64(r.Records))
	}
	fmt.Fprintf(w, "); audit %.0f, one-time IDs %.0f\n", float64(r.Buckets["audit"]+r.Buckets["audit_index"])/float64(r.Records),
		float64(r.Buckets["nonces"]+r.Buckets["nonces_by_expiry"])/float64(r.Records))
	fmt.Fprintf(w, "  %12s %10s %10s %10s %10s %10s\n", "records", "rss MiB", "anon MiB", "file MiB", "heap MiB", "bolt MiB")
	for _, m := range r.Memory {
		fmt.Fprintf(w, "  %12d %10.0f %10.0f %10.0f %10.1f %10.0f\n", m.Records, m.RSSMiB, m.AnonMiB, m.FileMiB, m.HeapMiB, m.BoltMiB)
	}
	fmt.Fprintf(w, "  snapshot %.1f s (%.0f MiB), restore %.1f s, reopen %.2f s\n", r.SnapshotSeconds, r.SnapshotMiB, r.RestoreSeconds, r.OpenSeconds)
	if r.Nodes > 0 {
		fmt.Fprintf(w, "  %d nodes start and elect %.2f s; leader failover %.2f s; an empty member replacing the old leader caught up in %.1f s\n",
			r.Nodes, r.StartSeconds, r.FailoverSeconds, r.JoinSeconds)
	}
	if r.CRLRefused != "" {
		fmt.Fprintf(w, "  revoke %d: %.1f s; complete CRL refused: %s\n", r.RevokedEntries, r.RevokeSeconds, r.CRLRefused)
	} else {
		fmt.Fprintf(w, "  revoke %d: %.1f s; CRL with %d entries built in %.2f s (%.0f KiB)\n", r.RevokedEntries, r.RevokeSeconds, r.RevokedEntries, r.CRLSeconds, r.CRLKiB)
	}
	if r.CRLShards > 1 {
		fmt.Fprintf(w, "  %d CRL shards built in %.2f s (%.0f KiB in all); the largest: %d entries, %.0f KiB, %.3f s\n",
			r.CRLShards, r.ShardsSeconds, r.ShardsKiB, r.ShardMaxEntries, r.ShardMaxKiB, r.ShardMaxSeconds)
	}
}

// FSM loads synthetic issued-certificate records into a node's state
// machine through its real apply path (envelopes decoded, checked and
// written by FSM.ApplyBatch, batch by batch, each batch one fsynced bolt
// transaction, as raft hands committed entries over), then measures what
// a large state costs: memory, snapshot, restore, starting a 3-node
// cluster on that state and electing a new leader after the old one is
// gone, and building a CRL. Records take their DER from a pool of real
// leaves (ECDSA P-256, with OCSP, issuer and CRL URLs, ~700 bytes): the
// size is real, the signatures are not what is measured.
func FSM(ctx context.Context, cfg FSMConfig) (*FSMResult, error) {
	if cfg.Records <= 0 {
		cfg.Records = 1_000_000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Revoked <= 0 {
		cfg.Revoked = 100_000
	}

	cfg.Revoked = min(cfg.Revoked, cfg.Records)
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	res := &FSMResult{Kind: "fsm", Records: cfg.Records, Batch: cfg.Batch, Machine: thisMachine(), Started: time.Now(),
		Note: "records take their DER from 256 real leaves, issued at 1.5 million a day of the state's clock; authorization is a one-time token (nonce) per record, as from a JWK provisioner, pruned once expired (an hour)"}

	dbPath := filepath.Join(cfg.Dir, "n1", "fsm.db")
	ld, auth, leaves, err := newLoader(ctx, cfg.Dir, dbPath, time.Now())
	if err != nil {
		return nil, err
	}
	f := ld.f
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	if cfg.CRLShards > 1 {
		base := "http://ca.bench.example"
		if err := ld.apply(fsm.CmdAuthorityUpdate, fsm.AuthorityUpdate{Name: auth.Name, BaseURL: &base,
			CRL: &fsm.CRLSettings{Shards: cfg.CRLShards}}); err != nil {
			return nil, fmt.Errorf("authority: %w", err)
		}
	}

	// Load, noting memory ten times on the way. The state's clock moves
	// as a fleet's would that makes 1.5 million certificates a day (a
	// million devices on 24-hour certificates, renewing at two thirds of
	// their life), so one-time IDs expire and are pruned as in production:
	// the state holds an hour of them, not every one ever used.
	ca := authority.New(authority.Config{State: f, Proposer: ld, Signers: &signer.Cache{AllowInsecure: true},
		Now: func() time.Time { return ld.now }})
	begin := ld.now
	start := time.Now()
	every, next := max(cfg.Records/10, 1), max(cfg.Records/10, 1)
	serials := make([]string, 0, cfg.Revoked)
	revokeEvery := max(cfg.Records/cfg.Revoked, 1)
	batch := make([]*fsm.Issue, 0, cfg.Batch)
	for i := 0; i < cfg.Records; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch = batch[:0]
		ld.now = begin.Add(time.Duration(i) * fleetInterval)
		if err := ca.PruneTokens(ctx); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		for ; len(batch) < cfg.Batch && i < cfg.Records; i++ {
			c := ld.record(i, leaves[i%len(leaves)], auth)
			if i%revokeEvery == 0 && len(serials) < cfg.Revoked {
				serials = append(serials, c.Cert.Serial)
			}
			batch = append(batch, c)
		}
		if err := ld.applyIssues(batch); err != nil {
			return nil, err
		}
		if i >= next || i == cfg.Records {
			next += every
			m := memPoint(i, dbPath)
			m.ElapsedSec = time.Since(start).Seconds()
			m.ApplyPerS = float64(i) / m.ElapsedSec
			res.Memory = append(res.Memory, m)
			fmt.Fprintf(cfg.Progress, "fsm: %d records, %.0f/s, rss %.0f MiB (anon %.0f), bolt %.0f MiB\n", i, m.ApplyPerS, m.RSSMiB, m.AnonMiB, m.BoltMiB)
		}
	}
	res.LoadSeconds = time.Since(start).Seconds()
	res.RecordsPerSec = float64(cfg.Records) / res.LoadSeconds
	res.BoltMiB = fileMiB(dbPath)
	res.Buckets = f.BucketBytes()
	for _, b := range fsm.RecordBuckets {
		res.RecordBytes += float64(res.Buckets[b]) / float64(cfg.Records)
	}
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return nil, err
		}
	}

	// Revocations, then the CRL through the authority's own path.
	t := time.Now()
	for lo := 0; lo < len(serials); lo += cfg.Batch {
		var envs []any
		for _, s := range serials[lo:min(lo+cfg.Batch, len(serials))] {
			envs = append(envs, fsm.Revoke{Serial: s, Reason: 1, By: "bench"})
		}
		if err := ld.applyMany(fsm.CmdRevoke, envs); err != nil {
			return nil, err
		}
	}
	res.RevokeSeconds, res.RevokedEntries = time.Since(t).Seconds(), len(serials)
	if err := benchCRLs(ctx, ca, f, auth.Issuers[0].ID, cfg, res); err != nil {
		return nil, err
	}

	// Reopen: what a restarting node pays before raft starts.
	if err := f.Close(); err != nil {
		return nil, err
	}
	f = nil
	t = time.Now()
	if f, err = fsm.Open(dbPath); err != nil {
		return nil, err
	}
	res.OpenSeconds = time.Since(t).Seconds()
	applied := f.AppliedIndex()

	if cfg.NoCluster {
		if err := streamSnapshot(cfg.Dir, f, res); err != nil {
			return nil, err
		}
	} else {
		if err := clusterOnState(ctx, cfg, f, applied, res); err != nil {
			return nil, err
		}
		f = nil // the nodes closed it
	}
	fmt.Fprintf(cfg.Progress, "fsm: snapshot %.0f MiB in %.1f s, restore %.1f s\n", res.SnapshotMiB, res.SnapshotSeconds, res.RestoreSeconds)

	after := memPoint(cfg.Records, dbPath)
	after.ElapsedSec = time.Since(start).Seconds()
	res.Memory = append(res.Memory, after)
	return res, nil
}

// streamSnapshot measures a snapshot streamed to nowhere, and a restore
// from a snapshot streamed into a scratch database, which is removed.
func streamSnapshot(dir string, f *fsm.FSM, res *FSMResult) error {
	t := time.Now()
	n, err := f.WriteTo(io.Discard)
	if err != nil {
		return err
	}
	res.SnapshotSeconds, res.SnapshotMiB = time.Since(t).Seconds(), float64(n)/(1<<20)
	scratch := filepath.Join(dir, "scratch")
	defer os.RemoveAll(scratch)
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return err
	}
	g, err := fsm.Open(filepath.Join(scratch, "fsm.db"))
	if err != nil {
		return err
	}
	defer g.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := f.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	t = time.Now()
	if err := g.Restore(pr); err != nil {
		return err
	}
	res.RestoreSeconds = time.Since(t).Seconds()
	return nil
}

// clusterOnState starts 3 nodes on f's state: n1 keeps its database and
// takes a raft snapshot of it; n2 and n3 restore theirs from that
// snapshot, as replaced nodes would. It measures the start (stores opened,
// a leader elected and committing) and the failover after the leader is
// gone. The nodes close f.
func clusterOnState(ctx context.Context, cfg FSMConfig, f *fsm.FSM, applied uint64, res *FSMResult) error {
	nodes, err := newScaleNodes(cfg.Dir, 3)
	if err != nil {
		f.Close()
		return err
	}
	defer func() { nodes.close() }() // with the member added later
	nodes[0].fsm = f
	t := time.Now()
	snapMeta, err := nodes.snapshot(applied)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	res.SnapshotSeconds, res.SnapshotMiB = time.Since(t).Seconds(), float64(snapMeta.Size)/(1<<20)
	t = time.Now()
	if err := nodes.restoreFollowers(snapMeta); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	res.RestoreSeconds = time.Since(t).Seconds() / float64(len(nodes)-1)
	t = time.Now()
	leader, err := nodes.start(ctx)
	if err != nil {
		return err
	}
	res.StartSeconds = time.Since(t).Seconds()
	t = time.Now()
	next, err := nodes.failover(ctx, leader)
	if err != nil {
		return err
	}
	res.FailoverSeconds = time.Since(t).Seconds()
	res.Nodes = len(nodes)
	fmt.Fprintf(cfg.Progress, "fsm: 3 nodes start and elect %.2f s, failover %.2f s\n", res.StartSeconds, res.FailoverSeconds)

	// The old leader is replaced: removed, its disk wiped, and a new empty
	// member added, which raft brings up to date with its snapshot.
	t = time.Now()
	if err := nodes.replace(ctx, next, leader); err != nil {
		return fmt.Errorf("new member: %w", err)
	}
	res.JoinSeconds = time.Since(t).Seconds()
	fmt.Fprintf(cfg.Progress, "fsm: a new member caught up in %.1f s\n", res.JoinSeconds)
	return nil
}

// fsmAuthority makes the dev authority's record and one real leaf.
func fsmAuthority(ctx context.Context, pki *node.DevPKI) (*fsm.Authority, [][]byte, error) {
	rootPEM, err := os.ReadFile(pki.RootFile)
	if err != nil {
		return nil, nil, err
	}
	chainPEM, err := os.ReadFile(pki.ChainFile)
	if err != nil {
		return nil, nil, err
	}
	roots, err := authority.ParseCertsPEM(rootPEM)
	if err != nil {
		return nil, nil, err
	}
	chain, err := authority.ParseCertsPEM(chainPEM)
	if err != nil {
		return nil, nil, err
	}
	sc := &signer.Cache{AllowInsecure: true}
	key, err := sc.Get(ctx, pki.KeyURI)
	if err != nil {
		return nil, nil, err
	}
	a := &fsm.Authority{Name: authority.DefaultAuthority, Root: roots[0].Raw,
		Issuers: []fsm.Issuer{{ID: authority.IssuerID(chain[0]), Chain: [][]byte{chain[0].Raw}, KeyURI: pki.KeyURI, Active: true}}}
	pool, err := leafPool(chain[0], signer.CryptoSigner(ctx, key), a.Issuers[0].ID, leafPoolSize)
	return a, pool, err
}

// leafPoolSize distinct leaves stand for the fleet's certificates: a
// record holds its DER compressed against its issuer's first leaf, so
// what a record costs depends on how its DER differs from that one, not
// on the others; a few hundred distinct leaves give every record a real
// one's difference.
const leafPoolSize = 256

// leafPool makes n leaves as the authority issues them with a base URL:
// a name, client and server use, OCSP, issuer and CRL URLs, each its own
// key, serial and validity.
func leafPool(issuer *x509.Certificate, key crypto.Signer, issuerID string, n int) ([][]byte, error) {
	const base = "http://ca.bench.example:8080"
	out := make([][]byte, 0, n)
	for i := range n {
		k, err := NewKey("ec256")
		if err != nil {
			return nil, err
		}
		serial, err := authority.NewSerial()
		if err != nil {
			return nil, err
		}
		name := "d" + strconv.Itoa(i) + ".fleet.bench.example"
		now := time.Now().Add(time.Duration(i) * time.Second).Truncate(time.Second)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
			Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			OCSPServer: []string{authority.OCSPURL(base)}, IssuingCertificateURL: []string{authority.IssuerURL(base, authority.DefaultAuthority, issuerID)},
			CRLDistributionPoints: []string{authority.CRLURL(base, authority.DefaultAuthority, issuerID)}}, issuer, k.Public(), key)
		if err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, nil
}

// benchCRLs builds the issuer's complete CRL (unless it is over one CRL's
// limit) and, if it is partitioned, each shard.
func benchCRLs(ctx context.Context, ca *authority.CA, f *fsm.FSM, issuer string, cfg FSMConfig, res *FSMResult) error {
	t := time.Now()
	err := ca.RefreshCRL(ctx, authority.DefaultAuthority, issuer, true)
	switch {
	case errors.Is(err, authority.ErrCRLTooLarge):
		res.CRLRefused = err.Error()
	case err != nil:
		return fmt.Errorf("crl: %w", err)
	default:
		res.CRLSeconds = time.Since(t).Seconds()
		crl, err := f.CRL(authority.DefaultAuthority, issuer)
		if err != nil {
			return err
		}
		res.CRLKiB = float64(len(crl.DER)) / 1024
		fmt.Fprintf(cfg.Progress, "fsm: CRL with %d entries in %.2f s\n", res.RevokedEntries, res.CRLSeconds)
	}
	if cfg.CRLShards < 2 {
		return nil
	}
	res.CRLShards = cfg.CRLShards
	all := time.Now()
	for k := range cfg.CRLShards {
		id := fsm.CRLShardID(issuer, k)
		t := time.Now()
		if err := ca.RefreshCRL(ctx, authority.DefaultAuthority, id, true); err != nil {
			return fmt.Errorf("crl shard %d: %w", k, err)
		}
		took := time.Since(t).Seconds()
		crl, err := f.CRL(authority.DefaultAuthority, id)
		if err != nil {
			return err
		}
		rl, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			return err
		}
		kib := float64(len(crl.DER)) / 1024
		res.ShardsKiB += kib
		res.ShardsEntries += len(rl.RevokedCertificateEntries)
		if n := len(rl.RevokedCertificateEntries); n > res.ShardMaxEntries {
			res.ShardMaxEntries, res.ShardMaxKiB = n, kib
		}
		res.ShardMaxSeconds = max(res.ShardMaxSeconds, took)
	}
	res.ShardsSeconds = time.Since(all).Seconds()
	fmt.Fprintf(cfg.Progress, "fsm: %d CRL shards in %.2f s\n", cfg.CRLShards, res.ShardsSeconds)
	return nil
}

// newLoader empties the work directory dir, opens a state at dbPath (under
// dir) with the dev authority (PKI under dir) and the log format marked,
// as a new cluster's leader writes first, and returns a loader on it, the
// authority and a pool of its leaves.
func newLoader(ctx context.Context, dir, dbPath string, now time.Time) (*loader, *fsm.Authority, [][]byte, error) {
	if dir == "" {
		return nil, nil, nil, errors.New("bench: a work directory is required")
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return nil, nil, nil, err
	}
	pki, err := node.LoadOrCreateDevPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, nil, nil, err
	}
	auth, leaves, err := fsmAuthority(ctx, pki)
	if err != nil {
		return nil, nil, nil, err
	}
	f, err := fsm.Open(dbPath)
	if err != nil {
		return nil, nil, nil, err
	}
	ld := &loader{f: f, now: now}
	err = ld.apply(fsm.CmdAuthorityPut, auth)
	if err == nil {
		err = ld.apply(fsm.CmdLogFormat, fsm.LogFormatMark{Format: fsm.LogFormat})
	}
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("authority: %w", err)
	}
	return ld, auth, leaves, nil
}

// fleetInterval is the time between two issuances of a fleet that makes
// 1.5 million certificates a day.
const fleetInterval = 24 * time.Hour / 1_500_000

// loader applies commands straight to an FSM with increasing indexes, and
// is the authority's Proposer for the CRL.
type loader struct {
	f     *fsm.FSM
	index uint64
	now   time.Time
}

func (l *loader) record(i int, der []byte, a *fsm.Authority) *fsm.Issue {
	var serial [20]byte
	binary.BigEndian.PutUint64(serial[:], uint64(l.now.UnixNano())+uint64(i))
	rand.Read(serial[8:])
	key := sha256.Sum256(serial[:])
	name := "d" + strconv.Itoa(i) + ".fleet.bench.example"
	nb := l.now.Add(-time.Minute).Truncate(time.Second)
	return &fsm.Issue{
		OneTime: &fsm.OneTime{Key: key[:], Expires: l.now.Add(time.Hour)},
		Cert: fsm.Cert{Serial: fmt.Sprintf("%x", serial), Authority: a.Name, Issuer: a.Issuers[0].ID,
			Subject: "CN=" + name, SANs: []string{name}, NotBefore: nb,
			NotAfter: nb.Add(30*24*time.Hour + time.Duration(i)*time.Millisecond), Provisioner: "fleet", // issued in order, one a millisecond
			Requester: "jwk:fleet:bench", DER: der},
	}
}

func (l *loader) applyIssues(batch []*fsm.Issue) error {
	envs := make([]any, len(batch))
	for i, c := range batch {
		envs[i] = c
	}
	return l.applyMany(fsm.CmdIssue, envs)
}

func (l *loader) apply(t fsm.CmdType, payload any) error {
	return l.applyMany(t, []any{payload})
}

// applyMany applies one batch; any entry's refusal is an error.
func (l *loader) applyMany(t fsm.CmdType, payloads []any) error {
	logs := make([]*raft.Log, len(payloads))
	for i, p := range payloads {
		l.index++
		env, err := fsm.NewEnvelope(t, "b"+strconv.FormatUint(l.index, 36), p)
		if err != nil {
			return err
		}
		env.Time = l.now.UnixNano()
		data, err := env.Encode()
		if err != nil {
			return err
		}
		logs[i] = &raft.Log{Index: l.index, Term: 1, Type: raft.LogCommand, Data: data}
	}
	for i, r := range l.f.ApplyBatch(logs) {
		if err, ok := r.(error); ok && err != nil {
			return fmt.Errorf("entry %d: %w", logs[i].Index, err)
		}
	}
	return nil
}

// Apply, Barrier, Propagate: authority.Proposer for the CRL.
func (l *loader) Apply(ctx context.Context, env *fsm.Envelope) error {
	var p any = env.Payload
	return l.applyMany(env.Type, []any{p})
}
func (l *loader) Barrier(context.Context) error                         { return nil }
func (l *loader) Propagate(context.Context) ([]string, []string, error) { return nil, nil, nil }

// memPoint reads this process's memory.
func memPoint(records int, db string) MemPoint {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := MemPoint{Records: records, HeapMiB: float64(ms.HeapAlloc) / (1 << 20), BoltMiB: fileMiB(db)}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			m.RSSMiB = kb / 1024
		case "RssAnon":
			m.AnonMiB = kb / 1024
		case "RssFile":
			m.FileMiB = kb / 1024
		}
	}
	return m
}

func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fileMiB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / (1 << 20)
}

// scaleNode is one raft node of the scale run: real TCP, bolt log store,
// file snapshots, our FSM, raft's default timings.
type scaleNode struct {
	id    raft.ServerID
	dir   string
	trans *raft.NetworkTransport
	snaps *raft.FileSnapshotStore
	logs  *raftboltdb.BoltStore
	fsm   *fsm.FSM
	r     *raft.Raft
}

type scaleNodes []*scaleNode

func newScaleNodes(dir string, n int) (scaleNodes, error) {
	var ns scaleNodes
	for i := range n {
		sn, err := newScaleNode(dir, i+1)
		if err != nil {
			ns.close()
			return nil, err
		}
		ns = append(ns, sn)
	}
	return ns, nil
}

// newScaleNode makes node number i's directory, transport and snapshot
// store under dir.
func newScaleNode(dir string, i int) (*scaleNode, error) {
	d := filepath.Join(dir, "n"+strconv.Itoa(i))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 4, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(d, 2, hclog.NewNullLogger())
	if err != nil {
		tr.Close()
		return nil, err
	}
	return &scaleNode{id: raft.ServerID("n" + strconv.Itoa(i)), dir: d, trans: tr, snaps: snaps}, nil
}

// startRaft opens n's log store and starts its raft.
func (n *scaleNode) startRaft() error {
	var err error
	n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.dir, "raft.db")})
	if err != nil {
		return err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = n.id
	rc.NoSnapshotRestoreOnStart = true // the FSM holds its state: nothing to load
	rc.Logger = hclog.NewNullLogger()
	n.r, err = raft.NewRaft(rc, n.fsm, n.logs, n.logs, n.snaps, n.trans)
	return err
}

// stop shuts n down and closes its stores.
func (n *scaleNode) stop() {
	if n.r != nil {
		n.r.Shutdown().Error()
		n.r = nil
	}
	if n.trans != nil {
		n.trans.Close()
		n.trans = nil
	}
	if n.logs != nil {
		n.logs.Close()
		n.logs = nil
	}
	if n.fsm != nil {
		n.fsm.Close()
		n.fsm = nil
	}
}

func (ns scaleNodes) configuration() raft.Configuration {
	var c raft.Configuration
	for _, n := range ns {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: n.id, Address: n.trans.LocalAddr()})
	}
	return c
}

// snapshot writes n1's state as a raft snapshot at index, naming all nodes
// as the configuration, as raft itself would after compacting its log.
func (ns scaleNodes) snapshot(index uint64) (*raft.SnapshotMeta, error) {
	sink, err := ns[0].snaps.Create(raft.SnapshotVersionMax, index, 1, ns.configuration(), 1, ns[0].trans)
	if err != nil {
		return nil, err
	}
	s, err := ns[0].fsm.Snapshot()
	if err != nil {
		sink.Cancel()
		return nil, err
	}
	defer s.Release()
	if err := s.Persist(sink); err != nil {
		return nil, err
	}
	metas, err := ns[0].snaps.List()
	if err != nil || len(metas) == 0 {
		return nil, fmt.Errorf("snapshot not listed: %v", err)
	}
	return metas[0], nil
}

// restoreFollowers gives every other node the snapshot (its snapshot store
// and its FSM restored from it), as an InstallSnapshot would.
func (ns scaleNodes) restoreFollowers(meta *raft.SnapshotMeta) error {
	for _, n := range ns[1:] {
		_, rc, err := ns[0].snaps.Open(meta.ID)
		if err != nil {
			return err
		}
		sink, err := n.snaps.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, n.trans)
		if err != nil {
			rc.Close()
			return err
		}
		_, err = io.Copy(sink, rc)
		rc.Close()
		if err == nil {
			err = sink.Close()
		} else {
			sink.Cancel()
		}
		if err != nil {
			return err
		}
		if n.fsm, err = fsm.Open(filepath.Join(n.dir, "fsm.db")); err != nil {
			return err
		}
		_, rc, err = n.snaps.Open(sink.ID())
		if err != nil {
			return err
		}
		if err := n.fsm.Restore(rc); err != nil {
			return err
		}
	}
	return nil
}

// start opens every node's raft and returns once one is leader and has
// committed an entry of its term.
func (ns scaleNodes) start(ctx context.Context) (*scaleNode, error) {
	for _, n := range ns {
		if err := n.startRaft(); err != nil {
			return nil, err
		}
	}
	return ns.awaitLeader(ctx, nil)
}

// failover shuts the leader down and waits for a new one to commit.
func (ns scaleNodes) failover(ctx context.Context, old *scaleNode) (*scaleNode, error) {
	if err := old.r.Shutdown().Error(); err != nil {
		return nil, err
	}
	old.trans.Close()
	return ns.awaitLeader(ctx, old)
}

// replace removes old (shut down) from the configuration through leader,
// deletes its directory, and adds an empty node in its place as a voter.
// It returns once the new node's state holds everything the leader had
// committed when it was added, as a new server's must before it is ready.
func (ns *scaleNodes) replace(ctx context.Context, leader, old *scaleNode) error {
	if err := leader.r.RemoveServer(old.id, 0, 0).Error(); err != nil {
		return err
	}
	old.stop()
	if err := os.RemoveAll(old.dir); err != nil {
		return err
	}
	n, err := newScaleNode(filepath.Dir(old.dir), len(*ns)+1)
	if err != nil {
		return err
	}
	*ns = append(*ns, n)
	if n.fsm, err = fsm.Open(filepath.Join(n.dir, "fsm.db")); err != nil {
		return err
	}
	if err := n.startRaft(); err != nil {
		return err
	}
	f := leader.r.AddVoter(n.id, n.trans.LocalAddr(), 0, 0)
	if err := f.Error(); err != nil {
		return err
	}
	target := f.Index()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	for n.r.AppliedIndex() < target { // raft's: the snapshot's index, then every entry after it
		select {
		case <-ctx.Done():
			return fmt.Errorf("the new member applied %d of %d in 30 minutes", n.r.AppliedIndex(), target)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (ns scaleNodes) awaitLeader(ctx context.Context, skip *scaleNode) (*scaleNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		for _, n := range ns {
			if n == skip || n.r == nil || n.r.State() != raft.Leader {
				continue
			}
			if n.r.Barrier(10*time.Second).Error() == nil {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("no leader elected within 2 minutes")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (ns scaleNodes) close() {
	for _, n := range ns {
		n.stop()
	}
}
