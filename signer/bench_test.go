package signer_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/signer"
	_ "github.com/quorumca/quorumca/signer/awskms"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
	_ "github.com/quorumca/quorumca/signer/soft"
)

var benchOptions = signer.Options{Concurrency: 64, MaxWait: time.Minute}

// benchSign signs b.N digests with conc workers and reports signatures per
// second. Compare backends within one run: the machine is shared.
func benchSign(b *testing.B, k signer.Key) {
	d := sha256.Sum256([]byte("benchmark"))
	for _, conc := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			ctx := context.Background()
			work := make(chan struct{}, b.N)
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						if _, err := k.SignContext(ctx, d[:], crypto.SHA256); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
		})
	}
}

// newBenchKey creates a P-256 key at uri and opens it.
func newBenchKey(b *testing.B, c *signer.Cache, uri string) signer.Key {
	b.Helper()
	uri, err := c.Create(context.Background(), uri, signer.AlgECP256)
	if err != nil {
		b.Fatal(err)
	}
	k, err := c.Get(context.Background(), uri)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkSignSoft(b *testing.B) {
	c := &signer.Cache{Options: benchOptions, AllowInsecure: true}
	benchSign(b, newBenchKey(b, c, "softkey:"+filepath.Join(b.TempDir(), "k.pem")))
}

func BenchmarkSignAWSKMS(b *testing.B) {
	kms := kmstest.Start(b)
	benchSign(b, newBenchKey(b, &signer.Cache{Options: benchOptions}, kms.KeyURI("")))
}
