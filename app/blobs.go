package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:///dir
	_ "gocloud.dev/blob/memblob"  // mem:// (tests)
	_ "gocloud.dev/blob/s3blob"   // s3://bucket?endpoint=...&region=...&use_path_style=true
	"gocloud.dev/gcerrors"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// BlobBucket is a gocloud.dev/blob bucket as the store's checkpoint object storage.
type BlobBucket struct {
	bucket *blob.Bucket
	url    string
}

var _ sqlstore.BlobStore = (*BlobBucket)(nil)

// OpenBlobStore opens object storage for checkpoints from a gocloud.dev/blob URL:
//
//	file:///var/lib/gatehouse/blobs            a directory (created if missing)
//	s3://bucket?region=eu-west-1&prefix=gh/    AWS S3 (credentials from the environment)
//	s3://bucket?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true
//	                                           an S3-compatible server (MinIO, Ceph, ...)
//	mem://                                     in memory (tests)
//
// For file:// URLs the directory is created if missing (create_dir), temporary files are
// written next to their final name so that the rename that publishes an object stays on one
// file system (no_tmp_dir), and no attribute side files are written (metadata=skip), unless
// the URL says otherwise. The result is a *BlobBucket: close it when done.
func OpenBlobStore(ctx context.Context, rawURL string) (sqlstore.BlobStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	if u.Scheme == "file" {
		q := u.Query()
		for k, v := range map[string]string{"create_dir": "true", "no_tmp_dir": "true", "metadata": "skip"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("blob store %s: %w", u.Redacted(), err)
	}
	return &BlobBucket{bucket: b, url: u.Redacted()}, nil
}

// Put writes data under key.
func (b *BlobBucket) Put(ctx context.Context, key string, data []byte) error {
	return b.bucket.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "application/json"})
}

// Get reads the object under key.
func (b *BlobBucket) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := b.bucket.ReadAll(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "checkpoint object %s is missing from %s", key, b.url)
	}
	return data, err
}

// Close closes the bucket.
func (b *BlobBucket) Close() error { return b.bucket.Close() }

// String names the bucket (without credentials).
func (b *BlobBucket) String() string { return b.url }

// AttachBlobStore opens the object storage at rawURL (see OpenBlobStore) and makes store, a
// SQL store, keep its checkpoints of at least minSize bytes there. An empty URL attaches
// nothing. The returned closer closes the bucket (call it after the server stopped).
func AttachBlobStore(ctx context.Context, store gatehouse.Store, rawURL string, minSize int) (io.Closer, error) {
	if rawURL == "" {
		return closeFunc(func() error { return nil }), nil
	}
	db, ok := store.(*sqlstore.DB)
	if !ok {
		return nil, errors.New("--blob-url needs a SQL store")
	}
	bs, err := OpenBlobStore(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	db.SetBlobStore(bs, minSize)
	return bs.(*BlobBucket), nil
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }
