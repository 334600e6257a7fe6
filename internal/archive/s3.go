package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func init() { openers["s3"] = openS3 }

// s3Store keeps objects in an S3 bucket, under a key prefix.
type s3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
	sse    types.ServerSideEncryption
	kmsKey string
}

// openS3 opens s3://bucket/prefix. Credentials and region come from the
// SDK's default chain; query parameters:
//
//	region=R      the bucket's region, over the default chain's
//	endpoint=URL  an S3-compatible server (MinIO, ...), addressed path-style
//	sse=aws:kms   encrypt with KMS, under kms_key_id=ID (a key id, ARN or
//	              alias) or else the AWS managed key aws/s3
//	sse=AES256    encrypt with S3-managed keys
//
// Without sse, the bucket's default encryption applies.
// Versioning and Object Lock are the operator's to set on the bucket.
// The bucket is checked here, so a wrong name or missing access shows at
// startup rather than at the first archive run.
func openS3(ctx context.Context, u *url.URL) (Store, error) {
	s := &s3Store{bucket: u.Host}
	if s.bucket == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("archive %q: want s3://bucket/prefix", u.Redacted())
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if err := CheckName(p); err != nil {
			return nil, fmt.Errorf("archive %q: bad prefix %q", u.Redacted(), p)
		}
		s.prefix = p + "/"
	}
	q := u.Query()
	for k := range q {
		// A mistyped parameter would otherwise be ignored, say leaving
		// objects encrypted with another key than meant.
		switch k {
		case "region", "endpoint", "sse", "kms_key_id":
		default:
			return nil, fmt.Errorf("archive %q: unknown parameter %q", u.Redacted(), k)
		}
	}
	switch sse := q.Get("sse"); sse {
	case "", "AES256", "aws:kms":
		s.sse = types.ServerSideEncryption(sse)
	default:
		return nil, fmt.Errorf("archive %q: sse %q is not aws:kms or AES256", u.Redacted(), sse)
	}
	s.kmsKey = q.Get("kms_key_id")
	if s.kmsKey != "" && s.sse != types.ServerSideEncryptionAwsKms {
		return nil, fmt.Errorf("archive %q: kms_key_id needs sse=aws:kms", u.Redacted())
	}

	var opts []func(*config.LoadOptions) error
	if r := q.Get("region"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("archive %s: aws config: %w", s, err)
	}
	endpoint := q.Get("endpoint")
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			// Compatible servers rarely have a DNS name per bucket.
			o.UsePathStyle = true
		}
	})

	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return nil, fmt.Errorf("archive %s: no bucket %q: %w", s, s.bucket, err)
		}
		return nil, fmt.Errorf("archive %s: bucket %q: %w", s, s.bucket, err)
	}
	return s, nil
}

func (s *s3Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Put is one PutObject: S3 stores an object whole or not at all.
func (s *s3Store) Put(ctx context.Context, name string, data []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	return s.put(ctx, name, bytes.NewReader(data), int64(len(data)))
}

func (s *s3Store) put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + name),
		Body:          body,
		ContentLength: aws.Int64(size),
		// Named, not left to the SDK's default, so a checksum goes even
		// with AWS_REQUEST_CHECKSUM_CALCULATION=when_required: a bucket
		// with Object Lock refuses a PutObject without one.
		ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
		ServerSideEncryption: s.sse,
	}
	if s.kmsKey != "" {
		in.SSEKMSKeyId = aws.String(s.kmsKey)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return fmt.Errorf("archive %s: put %s: %w", s, name, err)
	}
	return nil
}

// PutFile is one PutObject streamed from the file (S3 takes up to 5 GiB
// that way): the SDK seeks it to checksum and to retry.
func (s *s3Store) PutFile(ctx context.Context, name string, f *os.File) error {
	if err := CheckName(name); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > maxPutObject {
		return fmt.Errorf("archive %s: put %s: %d bytes, over the %d of one PutObject", s, name, st.Size(), int64(maxPutObject))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return s.put(ctx, name, f, st.Size())
}

// maxPutObject is the largest object one PutObject takes.
const maxPutObject = 5 << 30

func (s *s3Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + name),
	})
	if err != nil {
		// NoSuchKey is a 404; so is a missing bucket, which is no
		// missing object but a store gone.
		var ae smithy.APIError
		if httpStatus(err) == http.StatusNotFound && !(errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket") {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, fmt.Errorf("archive %s: get %s: %w", s, name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("archive %s: get %s: %w", s, name, err)
	}
	return b, nil
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]string, error) {
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	var out []string
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("archive %s: list %q: %w", s, prefix, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			// Keys not written by Put (a console's "folder/" marker, say)
			// are left out: List names only what Get can read.
			if CheckName(name) == nil {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// httpStatus is the HTTP status of a failed S3 call, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
