package bench

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// ChurnConfig sizes a fleet that renews forever, on an accelerated clock.
type ChurnConfig struct {
	Dir       string        // work directory (emptied first)
	Devices   int           // the fleet (default 1,000,000)
	Lifetime  time.Duration // each certificate's life (default 24h)
	Retention time.Duration // records kept this long after expiry (default 48h)
	// AuditRetention: audit entries kept this long (default Retention);
	// older ones are cut behind a signed checkpoint.
	AuditRetention time.Duration
	Days           int           // simulated days (default 7)
	Step           time.Duration // simulated time per round (default 1h)
	Batch          int           // issuances per FSM batch (default 256)
	Progress       io.Writer
}

// ChurnPoint is the state after a simulated time.
type ChurnPoint struct {
	Hours    float64 `json:"simulated_hours"`
	Issued   int     `json:"issued"`  // in all, so far
	Removed  int     `json:"removed"` // by retention, so far
	Records  int     `json:"records"` // in the state now
	BoltMiB  float64 `json:"bolt_mib"`
	FreeMiB  float64 `json:"free_mib"` // free pages bolt reuses
	FreePct  float64 `json:"free_percent"`
	RSSMiB   float64 `json:"rss_mib"`
	HeapMiB  float64 `json:"go_heap_mib"`
	Elapsed  float64 `json:"elapsed_seconds"`
	BytesRec float64 `json:"file_bytes_per_record"`
	// Buckets is the pages of every bucket, in bytes: what grows, if
	// anything does.
	Buckets map[string]int64 `json:"bucket_bytes"`
}

// ChurnResult is what the churn run reports.
type ChurnResult struct {
	Kind      string `json:"kind"` // "churn"
	Devices   int    `json:"devices"`
	Lifetime  string `json:"lifetime"`
	Retention string `json:"retention"`
	// AuditRetention: how long audit entries were kept.
	AuditRetention string       `json:"audit_retention"`
	Days           int          `json:"days"`
	Points         []ChurnPoint `json:"points"`
	// Steady: the file's size over the last quarter of the run, against
	// its size when the first records reached their retention (lifetime
	// + retention + a renewal period). Near 1: the file stopped growing.
	GrowthAfterSteady float64 `json:"growth_after_steady"`
	// RecordBytes: what a record and its index entries take in the file
	// at the end (fsm.RecordBuckets), Buckets every bucket's pages.
	RecordBytes float64          `json:"record_bytes"`
	Buckets     map[string]int64 `json:"bucket_bytes"`
	Machine     Machine          `json:"machine"`
	Started     time.Time        `json:"started"`
}

// WriteJSON writes r to path.
func (r *ChurnResult) WriteJSON(path string) error { return writeJSON(path, r) }

// Summary prints r for a terminal.
func (r *ChurnResult) Summary(w io.Writer) {
	fmt.Fprintf(w, "churn: %d devices, %s certificates renewed at 2/3 of their life, retention %s (audit %s), %d simulated days\n",
		r.Devices, r.Lifetime, r.Retention, r.AuditRetention, r.Days)
	fmt.Fprintf(w, "  %6s %11s %11s %10s %9s %9s %7s %8s %9s\n", "hours", "issued", "removed", "records", "bolt MiB", "free MiB", "free %", "rss MiB", "B/record")
	for _, p := range r.Points {
		fmt.Fprintf(w, "  %6.0f %11d %11d %10d %9.0f %9.1f %7.1f %8.0f %9.0f\n", p.Hours, p.Issued, p.Removed, p.Records, p.BoltMiB, p.FreeMiB, p.FreePct, p.RSSMiB, p.BytesRec)
	}
	fmt.Fprintf(w, "  the file over the last quarter of the run, against its size once retention was reached: x%.3f\n", r.GrowthAfterSteady)
	fmt.Fprintf(w, "  at the end, a record with its index entries: %.0f bytes (", r.RecordBytes)
	n := float64(r.Points[len(r.Points)-1].Records)
	for i, b := range fsm.RecordBuckets {
		fmt.Fprintf(w, "%s%s %.0f", map[bool]string{true: ", ", false: ""}[i > 0], b, float64(r.Buckets[b])/n)
	}
	fmt.Fprintf(w, ")\n")
}

// Churn runs a fleet through its renewals for a number of simulated days
// on one node's state machine, through its real apply path: each device
// renews at two thirds of its certificate's life (a new record, a one-time
// ID as from a JWK provisioner), and each round the leader's retention
// removes the records expired longer than the retention, as the leader
// does (authority.PruneExpired, every batch through the log), drops
// expired one-time IDs and cuts audit entries older than the audit
// retention (authority.CutAudit). It reports the file, its free pages and the
// process's memory after each simulated day.
func Churn(ctx context.Context, cfg ChurnConfig) (*ChurnResult, error) {
	cfg.Devices = cmp.Or(cfg.Devices, 1_000_000)
	cfg.Days = cmp.Or(cfg.Days, 7)
	cfg.Batch = cmp.Or(cfg.Batch, 256)
	cfg.Lifetime = cmp.Or(cfg.Lifetime, 24*time.Hour)
	cfg.Retention = cmp.Or(cfg.Retention, 48*time.Hour)
	cfg.AuditRetention = cmp.Or(cfg.AuditRetention, cfg.Retention)
	cfg.Step = cmp.Or(cfg.Step, time.Hour)
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	res := &ChurnResult{Kind: "churn", Devices: cfg.Devices, Lifetime: cfg.Lifetime.String(), Retention: cfg.Retention.String(),
		AuditRetention: cfg.AuditRetention.String(), Days: cfg.Days, Machine: thisMachine(), Started: time.Now()}
	dbPath := filepath.Join(cfg.Dir, "fsm.db")
	ld, auth, leaves, err := newLoader(ctx, cfg.Dir, dbPath, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		return nil, err
	}
	f := ld.f
	defer f.Close()
	ca := authority.New(authority.Config{State: f, Proposer: ld, Signers: &signer.Cache{AllowInsecure: true},
		Now: func() time.Time { return ld.now }})
	checkpointKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // the cluster CA key's part
	if err != nil {
		return nil, err
	}

	// The fleet enrolls over the first renewal period, spread evenly, so
	// its renewals are spread too; renewAt holds each device's next one.
	renewal := cfg.Lifetime * 2 / 3
	renewAt := make([]time.Time, cfg.Devices)
	for d := range renewAt {
		renewAt[d] = ld.now.Add(time.Duration(int64(renewal) * int64(d) / int64(cfg.Devices)))
	}
	start, begin := time.Now(), ld.now
	end := begin.Add(time.Duration(cfg.Days) * 24 * time.Hour)
	issued, removed, seq := 0, 0, 0
	batch := make([]*fsm.Issue, 0, cfg.Batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := ld.applyIssues(batch)
		issued += len(batch)
		batch = batch[:0]
		return err
	}
	for ld.now.Before(end) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next := ld.now.Add(cfg.Step)
		for d := range renewAt {
			if renewAt[d].Before(next) {
				batch = append(batch, churnRecord(ld.now, seq, d, cfg.Lifetime, leaves[d%len(leaves)], auth))
				seq++
				renewAt[d] = renewAt[d].Add(renewal)
				if len(batch) == cfg.Batch {
					if err := flush(); err != nil {
						return nil, err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		ld.now = next
		for {
			n, err := ca.PruneExpired(ctx, cfg.Retention, nil)
			if err != nil {
				return nil, fmt.Errorf("retention: %w", err)
			}
			removed += n
			if n < fsm.MaxPruneBatch {
				break
			}
		}
		if err := ca.PruneTokens(ctx); err != nil {
			return nil, err
		}
		for {
			n, err := ca.CutAudit(ctx, cfg.AuditRetention, nil, checkpointKey)
			if err != nil {
				return nil, fmt.Errorf("audit retention: %w", err)
			}
			if n < fsm.MaxAuditCut {
				break
			}
		}
		if h := ld.now.Sub(begin); h%(24*time.Hour) == 0 || !ld.now.Before(end) {
			p := churnPoint(f, dbPath, h, issued, removed)
			p.Elapsed = time.Since(start).Seconds()
			res.Points = append(res.Points, p)
			fmt.Fprintf(cfg.Progress, "churn: day %.1f, %d issued, %d removed, %d records, bolt %.0f MiB (%.1f%% free), rss %.0f MiB, %.0f s\n",
				p.Hours/24, p.Issued, p.Removed, p.Records, p.BoltMiB, p.FreePct, p.RSSMiB, p.Elapsed)
		}
	}
	res.GrowthAfterSteady = steadyGrowth(res.Points, cfg.Lifetime+cfg.Retention+renewal)
	last := res.Points[len(res.Points)-1]
	res.Buckets = last.Buckets
	if n := last.Records; n > 0 {
		for _, b := range fsm.RecordBuckets {
			res.RecordBytes += float64(res.Buckets[b]) / float64(n)
		}
	}
	return res, nil
}

// steadyGrowth is the largest file size over the last quarter of the run
// divided by the file size at the first point after steady (when the
// first records were removed and their pages came free), or 0 when the
// run is too short to tell.
func steadyGrowth(ps []ChurnPoint, steady time.Duration) float64 {
	if len(ps) == 0 {
		return 0
	}
	last := ps[len(ps)-1].Hours
	var at *ChurnPoint
	for i := range ps {
		if ps[i].Hours >= steady.Hours() && ps[i].Hours <= last*3/4 {
			at = &ps[i]
			break
		}
	}
	if at == nil || at.BoltMiB == 0 {
		return 0
	}
	most := 0.0
	for _, p := range ps {
		if p.Hours >= last*3/4 {
			most = max(most, p.BoltMiB)
		}
	}
	return most / at.BoltMiB
}

func churnPoint(f *fsm.FSM, db string, h time.Duration, issued, removed int) ChurnPoint {
	m := memPoint(0, db)
	free, file := f.FreeBytes()
	records := f.CertCount()
	p := ChurnPoint{Hours: h.Hours(), Issued: issued, Removed: removed, Records: records, BoltMiB: float64(file) / (1 << 20),
		FreeMiB: float64(free) / (1 << 20), RSSMiB: m.RSSMiB, HeapMiB: m.HeapMiB, Buckets: f.BucketBytes()}
	if file > 0 {
		p.FreePct = 100 * float64(free) / float64(file)
	}
	if records > 0 {
		p.BytesRec = float64(file-free) / float64(records)
	}
	return p
}

// churnRecord is device d's certificate issued at now, with a one-time ID
// as from a JWK provisioner.
func churnRecord(now time.Time, seq, d int, life time.Duration, der []byte, a *fsm.Authority) *fsm.Issue {
	var serial [20]byte
	binary.BigEndian.PutUint64(serial[:], uint64(now.UnixNano())+uint64(seq))
	binary.BigEndian.PutUint64(serial[8:], uint64(seq))
	binary.BigEndian.PutUint32(serial[16:], uint32(d))
	key := sha256.Sum256(serial[:])
	name := "d" + strconv.Itoa(d) + ".fleet.bench.example"
	nb := now.Truncate(time.Second)
	return &fsm.Issue{
		OneTime: &fsm.OneTime{Key: key[:], Expires: now.Add(5 * time.Minute)},
		Cert: fsm.Cert{Serial: fmt.Sprintf("%x", serial), Authority: a.Name, Issuer: a.Issuers[0].ID,
			Subject: "CN=" + name, SANs: []string{name}, NotBefore: nb, NotAfter: nb.Add(life), Provisioner: "fleet",
			Requester: "jwk:fleet:bench", DER: der},
	}
}
