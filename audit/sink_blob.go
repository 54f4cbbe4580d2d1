package audit

import (
	"context"
	"fmt"
	"net/url"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:///dir?blob=1
	_ "gocloud.dev/blob/memblob"  // mem://
	_ "gocloud.dev/blob/s3blob"   // s3://bucket?endpoint=...&region=...
)

// blobSink writes each batch as one object named by its first and last seq.
type blobSink struct {
	name   string
	bucket *blob.Bucket
	format string
	host   string
	buf    []byte
}

// openBlobSink opens a gocloud.dev/blob bucket URL. Our parameters (name, hostname, format,
// blob) are removed before the URL is handed to gocloud; the rest (endpoint, region,
// prefix, create_dir, ...) are the driver's.
func openBlobSink(ctx context.Context, u *url.URL, name, host string) (Sink, error) {
	q := u.Query()
	format, err := parseFormat(q)
	if err != nil {
		return nil, err
	}
	bu := *u
	bu.RawQuery = queryWithout(u, "name", "hostname", "format", "blob").Encode()
	b, err := blob.OpenBucket(ctx, bu.String())
	if err != nil {
		return nil, fmt.Errorf("audit: opening blob sink %s: %v", name, redactErr(err))
	}
	return NewBlobSink(b, name, format, host), nil
}

// NewBlobSink returns a sink that writes each batch to bucket as one object in format
// (FormatJSONL, FormatCEF or FormatOCSF), keyed
//
//	audit-<first seq>-<last seq>.<jsonl|cef|ocsf.jsonl>
//
// with both seqs zero-padded to 20 digits, so keys sort in log order and a repeated batch
// overwrites its object instead of adding a duplicate. The sink owns bucket and closes it.
func NewBlobSink(bucket *blob.Bucket, name, format, host string) Sink {
	if format == "" {
		format = FormatJSONL
	}
	return &blobSink{name: name, bucket: bucket, format: format, host: syslogToken(host, 255)}
}

// BlobKey returns the object key of a batch from first to last seq in format.
func BlobKey(first, last int64, format string) string {
	return fmt.Sprintf("audit-%020d-%020d.%s", first, last, formatExt(format))
}

func (s *blobSink) Name() string { return s.name }

func (s *blobSink) Write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	if len(batch) == 0 {
		return nil
	}
	var err error
	s.buf, err = encodeBatch(s.buf[:0], s.format, s.host, batch)
	if err != nil {
		return err
	}
	key := BlobKey(batch[0].Seq, batch[len(batch)-1].Seq, s.format)
	ct := "application/x-ndjson"
	if s.format == FormatCEF {
		ct = "text/plain; charset=utf-8"
	}
	if err := s.bucket.WriteAll(ctx, key, s.buf, &blob.WriterOptions{ContentType: ct}); err != nil {
		return fmt.Errorf("audit: blob sink %s: writing %s: %v", s.name, key, redactErr(err))
	}
	return nil
}

func (s *blobSink) Close() error {
	if s.bucket == nil {
		return nil
	}
	err := s.bucket.Close()
	s.bucket = nil
	return err
}
