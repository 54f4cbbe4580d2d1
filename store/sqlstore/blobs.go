package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strings"
	"sync"
	"weak"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Checkpoints in object storage (optional): with a blob store attached, a checkpoint of at
// least the store's minimum size is written to the blob store first, under a key derived
// from its content (the SHA-256 of its bytes), and the checkpoint's row, written in the same
// transaction as before, holds only that key. So a checkpoint acknowledged to the CLI is in
// both places, and a failure in between leaves at worst an object no row refers to: harmless
// garbage, never a row without its object. Objects are never overwritten with other bytes
// (same key, same content), never deleted by Gatehouse, and checked against their key when
// read back.

// BlobStore is object storage for checkpoints (see app.OpenBlobStore for gocloud.dev/blob
// URLs). Put must be durable when it returns; putting a key again with the same bytes must
// succeed. Get returns the bytes stored under key.
type BlobStore interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// blobKeyPrefix starts every checkpoint object's key; the rest is the hex SHA-256 of its
// content.
const blobKeyPrefix = "checkpoints/sha256/"

type blobConfig struct {
	bs      BlobStore
	minSize int
}

// blobConfigs holds each DB's blob store, keyed weakly (the DB's other state lives in
// db.go; this keeps the feature in this file and lets a DB be collected).
var blobConfigs sync.Map // weak.Pointer[DB] -> *blobConfig

// SetBlobStore attaches object storage for checkpoints: from now on checkpoints of at least
// minSize bytes (every one for minSize <= 0) are written to bs and referenced from their
// rows; smaller ones stay in the database. nil detaches it (checkpoints already in object
// storage then cannot be read). Call it before the store serves requests. Checkpoints
// written before stay where they are; both kinds are read transparently.
func (db *DB) SetBlobStore(bs BlobStore, minSize int) {
	key := weak.Make(db)
	if bs == nil {
		blobConfigs.Delete(key)
		return
	}
	if _, loaded := blobConfigs.Swap(key, &blobConfig{bs: bs, minSize: max(minSize, 0)}); !loaded {
		runtime.AddCleanup(db, func(k weak.Pointer[DB]) { blobConfigs.Delete(k) }, key)
	}
}

func (db *DB) blobs() *blobConfig {
	v, ok := blobConfigs.Load(weak.Make(db))
	if !ok {
		return nil
	}
	return v.(*blobConfig)
}

// BlobKey returns the object key a checkpoint's bytes are stored under.
func BlobKey(data []byte) string {
	sum := sha256.Sum256(data)
	return blobKeyPrefix + hex.EncodeToString(sum[:])
}

// checkpointRow returns what a checkpoint's row holds: the bytes themselves (and no key),
// or, with a blob store attached and data at least its minimum size, no bytes and the key
// of the object the bytes were written to.
func (t *tx) checkpointRow(data []byte) ([]byte, string, error) {
	bc := t.db.blobs()
	if bc == nil || len(data) < bc.minSize {
		return data, "", nil
	}
	key := BlobKey(data)
	if err := bc.bs.Put(t.ctx, key, data); err != nil {
		return nil, "", gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "object storage unavailable: the checkpoint was not stored")
	}
	return []byte{}, key, nil
}

// checkpointData returns a checkpoint's bytes from its row: inline, or read from the blob
// store and checked against the key.
func (t *tx) checkpointData(data []byte, key string) ([]byte, error) {
	if key == "" {
		return data, nil
	}
	bc := t.db.blobs()
	if bc == nil {
		return nil, gatehouse.Errorf(gatehouse.EUNAVAILABLE, "the checkpoint is kept in object storage (%s) but no blob store is configured: start gatehouse with --blob-url", key)
	}
	b, err := bc.bs.Get(t.ctx, key)
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "object storage unavailable: reading checkpoint %s", key)
	}
	if BlobKey(b) != key || !strings.HasPrefix(key, blobKeyPrefix) {
		return nil, gatehouse.Errorf(gatehouse.EINTERNAL, "checkpoint object %s is corrupt: its content does not match its SHA-256", key)
	}
	return b, nil
}
