// Package awskms signs with keys in AWS KMS. The private key never leaves
// KMS; a node holds only the key's ID and, cached, its public key.
//
// URI: awskms:<key id, ARN or alias/name>[?region=eu-west-1&endpoint=https://...]
// Credentials come from the standard AWS chain (an instance role on EC2);
// nothing secret is in the URI or the config.
package awskms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/signer"
)

// Scheme is the URI scheme of KMS keys.
const Scheme = "awskms"

const (
	defaultTimeout     = 5 * time.Second
	defaultConcurrency = 16
	// After the backend proved unreachable, requests fail fast for this
	// long instead of each waiting for a timeout; then one probes again.
	openCircuit = 2 * time.Second
	healthTTL   = 5 * time.Second
	maxAttempts = 6
)

func init() { signer.Register(Scheme, open, create, false) }

type ref struct {
	keyID, region, endpoint string
}

func parseURI(uri string) (ref, error) {
	rest := strings.TrimPrefix(uri, Scheme+":")
	id, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil || (id == "" && !strings.Contains(uri, "?")) {
		return ref{}, fmt.Errorf("%w: %q: want awskms:<key>[?region=..&endpoint=..]", signer.ErrBadURI, uri)
	}
	r := ref{keyID: id, region: q.Get("region"), endpoint: q.Get("endpoint")}
	if r.region == "" && strings.HasPrefix(id, "arn:") {
		if parts := strings.Split(id, ":"); len(parts) > 3 {
			r.region = parts[3]
		}
	}
	return r, nil
}

func (r ref) uri() string {
	q := url.Values{}
	if r.region != "" {
		q.Set("region", r.region)
	}
	if r.endpoint != "" {
		q.Set("endpoint", r.endpoint)
	}
	if len(q) == 0 {
		return Scheme + ":" + r.keyID
	}
	return Scheme + ":" + r.keyID + "?" + q.Encode()
}

func client(ctx context.Context, r ref, o signer.Options) (*kms.Client, error) {
	var opts []func(*config.LoadOptions) error
	if r.region != "" {
		opts = append(opts, config.WithRegion(r.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awskms: aws config: %w", err)
	}
	return kms.NewFromConfig(cfg, func(k *kms.Options) {
		if r.endpoint != "" {
			k.BaseEndpoint = aws.String(r.endpoint)
		}
		// Retries are ours: the SDK's client-side retry quota would fail
		// requests during a throttling burst instead of backing off.
		k.Retryer = aws.NopRetryer{}
	}), nil
}

type key struct {
	uri     string
	ref     ref
	client  *kms.Client
	pub     crypto.PublicKey
	algs    []types.SigningAlgorithmSpec
	lim     *signer.Limiter
	timeout time.Duration

	mu        sync.Mutex
	downSince time.Time // zero while reachable
	lastErr   error
	healthAt  time.Time
	healthErr error
}

func open(ctx context.Context, uri string, o signer.Options) (signer.Key, error) {
	r, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	c, err := client(ctx, r, o)
	if err != nil {
		return nil, err
	}
	k := &key{uri: uri, ref: r, client: c, lim: signer.NewLimiter(o, defaultConcurrency), timeout: o.Timeout}
	if k.timeout <= 0 {
		k.timeout = defaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := c.GetPublicKey(cctx, &kms.GetPublicKeyInput{KeyId: aws.String(r.keyID)})
	if err != nil {
		return nil, fmt.Errorf("%w: awskms %s: get public key: %v", signer.ErrUnavailable, r.keyID, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("awskms %s: key usage is %s, not SIGN_VERIFY", r.keyID, out.KeyUsage)
	}
	if k.pub, err = x509.ParsePKIXPublicKey(out.PublicKey); err != nil {
		return nil, fmt.Errorf("awskms %s: public key: %w", r.keyID, err)
	}
	k.algs = out.SigningAlgorithms
	return k, nil
}

func (k *key) Public() crypto.PublicKey { return k.pub }
func (k *key) URI() string              { return k.uri }
func (k *key) Close() error             { return nil }

// Limiter exposes the key's budget, for tests and metrics.
func (k *key) Limiter() *signer.Limiter { return k.lim }

// algorithm maps a digest and options to the KMS signing algorithm.
func (k *key) algorithm(opts crypto.SignerOpts) (types.SigningAlgorithmSpec, error) {
	h := opts.HashFunc()
	bits := map[crypto.Hash]string{crypto.SHA256: "256", crypto.SHA384: "384", crypto.SHA512: "512"}[h]
	if bits == "" {
		return "", fmt.Errorf("awskms: unsupported hash %v", h)
	}
	var alg types.SigningAlgorithmSpec
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		alg = types.SigningAlgorithmSpec("ECDSA_SHA_" + bits)
	case *rsa.PublicKey:
		if _, pss := opts.(*rsa.PSSOptions); pss {
			alg = types.SigningAlgorithmSpec("RSASSA_PSS_SHA_" + bits)
		} else {
			alg = types.SigningAlgorithmSpec("RSASSA_PKCS1_V1_5_SHA_" + bits)
		}
	default:
		return "", fmt.Errorf("awskms: unsupported key type %T", k.pub)
	}
	for _, a := range k.algs {
		if a == alg {
			return alg, nil
		}
	}
	return "", fmt.Errorf("awskms %s: key does not offer %s", k.ref.keyID, alg)
}

// SignContext signs a digest in KMS, within this node's budget for the key,
// retrying throttling and transient failures with capped, jittered backoff.
func (k *key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, err := k.algorithm(opts)
	if err != nil {
		return nil, err
	}
	if err := k.circuit(); err != nil {
		return nil, err
	}
	release, err := k.lim.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	throttled := false
	defer func() { release(throttled) }()
	retry := backoff.New(50*time.Millisecond, time.Second)
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, k.timeout)
		out, err := k.client.Sign(cctx, &kms.SignInput{
			KeyId: aws.String(k.ref.keyID), Message: digest,
			MessageType: types.MessageTypeDigest, SigningAlgorithm: alg,
		})
		cancel()
		if err == nil {
			k.reachable()
			return out.Signature, nil
		}
		kind := classify(err)
		switch kind {
		case throttle:
			throttled = true
		case unreachable:
			k.unreachable(err)
		case permanent:
			return nil, fmt.Errorf("%w: awskms %s: %v", signer.ErrUnavailable, k.ref.keyID, err)
		}
		if ctx.Err() != nil || attempt == maxAttempts {
			if kind == throttle {
				return nil, fmt.Errorf("%w: awskms %s: throttled: %v", signer.ErrOverloaded, k.ref.keyID, err)
			}
			return nil, fmt.Errorf("%w: awskms %s: %v", signer.ErrUnavailable, k.ref.keyID, err)
		}
		if kind == unreachable && k.circuit() != nil {
			return nil, fmt.Errorf("%w: awskms %s: %v", signer.ErrUnavailable, k.ref.keyID, err)
		}
		if !retry.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

type errKind int

const (
	transient errKind = iota
	throttle
	unreachable
	permanent
)

// classify sorts a KMS error: throttling backs the limiter off, transient
// errors are retried, an unreachable service opens the circuit, and the
// rest (access denied, disabled key, wrong algorithm) fail at once.
func classify(err error) errKind {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "LimitExceededException", "RequestLimitExceeded", "TooManyRequestsException":
			return throttle
		case "KMSInternalException", "DependencyTimeoutException", "InternalFailure", "ServiceUnavailable",
			"ServiceUnavailableException", "KeyUnavailableException":
			return transient
		}
		return permanent
	}
	if errors.Is(err, context.Canceled) {
		return permanent
	}
	return unreachable // connection refused, DNS, timeouts
}

// circuit fails fast while the service is known to be unreachable.
func (k *key) circuit() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.downSince.IsZero() || time.Since(k.downSince) > openCircuit {
		return nil
	}
	return fmt.Errorf("%w: awskms %s unreachable: %v", signer.ErrUnavailable, k.ref.keyID, k.lastErr)
}

func (k *key) unreachable(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.downSince, k.lastErr = time.Now(), err
}

func (k *key) reachable() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.downSince = time.Time{}
}

// Health asks KMS whether the key is enabled, at most every healthTTL.
func (k *key) Health(ctx context.Context) error {
	k.mu.Lock()
	if time.Since(k.healthAt) < healthTTL {
		err := k.healthErr
		k.mu.Unlock()
		return err
	}
	k.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, min(k.timeout, 2*time.Second))
	defer cancel()
	out, err := k.client.DescribeKey(cctx, &kms.DescribeKeyInput{KeyId: aws.String(k.ref.keyID)})
	switch {
	case err != nil:
		if classify(err) == unreachable {
			k.unreachable(err)
		}
		err = fmt.Errorf("%w: awskms %s: %v", signer.ErrUnavailable, k.ref.keyID, err)
	case out.KeyMetadata.KeyState != types.KeyStateEnabled:
		err = fmt.Errorf("%w: awskms %s is %s", signer.ErrUnavailable, k.ref.keyID, out.KeyMetadata.KeyState)
	default:
		k.reachable()
	}
	k.mu.Lock()
	k.healthAt, k.healthErr = time.Now(), err
	k.mu.Unlock()
	return err
}

var keySpecs = map[string]types.KeySpec{
	signer.AlgECP256: types.KeySpecEccNistP256, signer.AlgECP384: types.KeySpecEccNistP384,
	signer.AlgRSA2048: types.KeySpecRsa2048, signer.AlgRSA3072: types.KeySpecRsa3072, signer.AlgRSA4096: types.KeySpecRsa4096,
}

// create makes a SIGN_VERIFY key; the URI's key part, if any, becomes an
// alias ("awskms:alias/quorumca-int?region=...").
func create(ctx context.Context, uri, alg string, o signer.Options) (string, error) {
	r, err := parseURI(uri)
	if err != nil {
		return "", err
	}
	spec, ok := keySpecs[alg]
	if !ok {
		return "", fmt.Errorf("awskms: unsupported algorithm %q", alg)
	}
	c, err := client(ctx, r, o)
	if err != nil {
		return "", err
	}
	in := &kms.CreateKeyInput{KeySpec: spec, KeyUsage: types.KeyUsageTypeSignVerify,
		Description: aws.String("quorumca signing key")}
	for _, k := range slices.Sorted(maps.Keys(o.NewKeyTags)) {
		in.Tags = append(in.Tags, types.Tag{TagKey: aws.String(k), TagValue: aws.String(o.NewKeyTags[k])})
	}
	if o.NewKeyPolicyFrom != "" {
		from, err := parseURI(o.NewKeyPolicyFrom)
		if err != nil {
			return "", fmt.Errorf("awskms: new_key_policy_from: %w", err)
		}
		pol, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(from.keyID), PolicyName: aws.String("default")})
		if err != nil {
			return "", fmt.Errorf("awskms: policy of %s: %w", from.keyID, err)
		}
		// The policy names the keys' administrators, not this node: KMS
		// would refuse it as a lockout of its creator without the bypass,
		// and the administrators keep the key manageable.
		in.Policy, in.BypassPolicyLockoutSafetyCheck = pol.Policy, true
	}
	out, err := c.CreateKey(ctx, in)
	if err != nil {
		return "", fmt.Errorf("awskms: create key: %w", err)
	}
	id := aws.ToString(out.KeyMetadata.KeyId)
	if strings.HasPrefix(r.keyID, "alias/") {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(r.keyID), TargetKeyId: aws.String(id)}); err != nil {
			return "", fmt.Errorf("awskms: alias %s: %w", r.keyID, err)
		}
		id = r.keyID
	}
	r.keyID = id
	return r.uri(), nil
}
