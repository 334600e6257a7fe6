package awskms_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/awskms"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
)

func newKey(t *testing.T, kms *kmstest.Server, c *signer.Cache, alg string) signer.Key {
	t.Helper()
	ctx := context.Background()
	uri, err := c.Create(ctx, kms.KeyURI(""), alg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignAndVerify(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{}
	ctx := context.Background()
	msg := []byte("to be signed")
	for _, alg := range []string{signer.AlgECP256, signer.AlgECP384, signer.AlgRSA2048, signer.AlgRSA3072} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, kms, c, alg)
			s := signer.CryptoSigner(ctx, k)
			switch pub := k.Public().(type) {
			case *ecdsa.PublicKey:
				h := crypto.SHA256
				if pub.Curve.Params().BitSize == 384 {
					h = crypto.SHA384
				}
				d := digest(h, msg)
				sig, err := s.Sign(rand.Reader, d, h)
				if err != nil {
					t.Fatal(err)
				}
				if !ecdsa.VerifyASN1(pub, d, sig) {
					t.Fatal("ECDSA signature does not verify")
				}
			case *rsa.PublicKey:
				// PKCS#1 v1.5: local-kms's PSS salt differs from AWS's.
				d := digest(crypto.SHA256, msg)
				sig, err := s.Sign(rand.Reader, d, crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d, sig); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// A burst of throttling is absorbed by retries, and while it lasts the
// concurrency cap halves instead of hammering KMS.
func TestThrottlingIsRetriedAndConcurrencyCapped(t *testing.T) {
	kms := kmstest.Start(t)
	const cap = 4
	c := &signer.Cache{Options: signer.Options{Concurrency: cap, MaxWait: 10 * time.Second}}
	k := newKey(t, kms, c, signer.AlgECP256)
	kms.ResetPeak()
	kms.Throttle(12)
	d := digest(crypto.SHA256, []byte("x"))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sig, err := k.SignContext(ctx, d, crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d, sig) {
				err = errors.New("bad signature")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("sign under throttling: %v", err)
		}
	}
	if kms.Signs() < 40 {
		t.Errorf("KMS signed %d times, want 40", kms.Signs())
	}
	if p := kms.Peak(); p > cap {
		t.Errorf("%d requests in flight at KMS, cap %d", p, cap)
	}
	if l := k.(interface{ Limiter() *signer.Limiter }).Limiter(); l.Peak() > cap {
		t.Errorf("limiter peak %d, cap %d", l.Peak(), cap)
	}
}

// When the budget is spent the signer sheds load at once.
func TestOverloadIsShed(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{Options: signer.Options{Concurrency: 8, Rate: 1, Burst: 1, MaxWait: 10 * time.Millisecond}}
	k := newKey(t, kms, c, signer.AlgECP256)
	d := digest(crypto.SHA256, []byte("x"))
	ctx := context.Background()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrOverloaded) {
		t.Fatalf("over budget: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("shedding took %s", time.Since(start))
	}
}

// An unreachable KMS makes health fail and, after the first failure,
// signatures fail fast with ErrUnavailable instead of hanging.
func TestUnreachableFailsFast(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{Options: signer.Options{Timeout: time.Second}}
	k := newKey(t, kms, c, signer.AlgECP256)
	ctx := context.Background()
	if err := k.(signer.HealthChecker).Health(ctx); err != nil {
		t.Fatalf("healthy key: %v", err)
	}
	kms.Close()
	d := digest(crypto.SHA256, []byte("x"))
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrUnavailable) {
		t.Fatalf("sign with KMS down: %v", err)
	}
	start := time.Now()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrUnavailable) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("second sign with KMS down: %v after %s", err, time.Since(start))
	}
}

func TestBadURIs(t *testing.T) {
	c := &signer.Cache{}
	for _, uri := range []string{"awskms:", "awskms:%zz?"} {
		if _, err := c.Get(context.Background(), uri); err == nil {
			t.Errorf("%q opened", uri)
		}
	}
	_ = awskms.Scheme
}

// A key made from a running cluster takes the policy of the key named by
// new_key_policy_from and the cluster's tags: KMS's default policy would
// let any IAM policy in the account grant signing with it.
func TestCreatedKeyTakesThePolicyOfAnother(t *testing.T) {
	srv := kmstest.Start(t)
	ctx := context.Background()
	cl := kms.New(kms.Options{Region: kmstest.Region, BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	confined := `{"Version":"2012-10-17","Statement":[{"Sid":"ServersSign","Effect":"Allow",` +
		`"Principal":{"AWS":"arn:aws:iam::111122223333:role/quorumca-node"},"Action":["kms:Sign"],"Resource":"*"}]}`
	made, err := cl.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify,
		Policy: aws.String(confined)})
	if err != nil {
		t.Fatal(err)
	}
	srcID := aws.ToString(made.KeyMetadata.Arn)
	src := srv.KeyURI(srcID)

	c := &signer.Cache{Options: signer.Options{NewKeyPolicyFrom: src,
		NewKeyTags: map[string]string{"quorumca-cluster": "prod", "owner": "pki"}}}
	uri, err := c.Create(ctx, srv.KeyURI(""), signer.AlgECP256)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(strings.Split(uri, "?")[0], "awskms:")
	if id == srcID {
		t.Fatal("no new key")
	}
	pol, err := cl.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(pol.Policy) != confined {
		t.Fatalf("new key's policy:\n%s\nwant the source key's:\n%s", aws.ToString(pol.Policy), confined)
	}
	tags, err := cl.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range tags.Tags {
		got[aws.ToString(tg.TagKey)] = aws.ToString(tg.TagValue)
	}
	if got["quorumca-cluster"] != "prod" || got["owner"] != "pki" || len(got) != 2 {
		t.Fatalf("new key's tags: %v", got)
	}
	if _, err := c.Get(ctx, uri); err != nil {
		t.Fatalf("the new key does not open: %v", err)
	}

	// A source that does not exist creates nothing.
	c.Options.NewKeyPolicyFrom = srv.KeyURI("alias/nowhere")
	before, _ := cl.ListKeys(ctx, &kms.ListKeysInput{})
	if _, err := c.Create(ctx, srv.KeyURI(""), signer.AlgECP256); err == nil {
		t.Fatal("created a key with the policy of a key that does not exist")
	}
	after, _ := cl.ListKeys(ctx, &kms.ListKeysInput{})
	if len(after.Keys) != len(before.Keys) {
		t.Fatalf("keys %d -> %d after a refused creation", len(before.Keys), len(after.Keys))
	}
}

// KMS cannot decrypt RSAES-PKCS1-v1_5, which SCEP clients use: its keys do
// not offer decryption, also behind the Cache's observer.
func TestKeysDoNotDecrypt(t *testing.T) {
	kms := kmstest.Start(t)
	ctx := context.Background()
	for _, c := range []*signer.Cache{{}, {Observe: func(string, time.Duration, error) {}}} {
		k := newKey(t, kms, c, signer.AlgRSA2048)
		if _, ok := signer.CryptoDecrypter(ctx, k); ok {
			t.Fatalf("%T offers decryption", k)
		}
	}
}
