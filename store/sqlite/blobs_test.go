package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

func openBlobs(t *testing.T, rawURL string) sqlstore.BlobStore {
	t.Helper()
	bs, err := app.OpenBlobStore(context.Background(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.(*app.BlobBucket).Close() })
	return bs
}

func fileURL(dir string) string { return (&url.URL{Scheme: "file", Path: dir}).String() }

// TestConformanceWithBlobs runs the whole conformance suite with checkpoints in object
// storage: those of 100 bytes or more in a directory (file://), smaller ones inline.
func TestConformanceWithBlobs(t *testing.T) {
	storetest.Run(t, func(t *testing.T) gatehouse.Store {
		dir := scratchDir(t)
		db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		db.SetBlobStore(openBlobs(t, fileURL(filepath.Join(dir, "blobs"))), 100)
		return db
	})
}

// scratchDir is a temporary directory removed after the test, retrying for a moment: under
// load a connection the store was still opening when it was closed may create a file in it
// during the removal (t.TempDir then fails the test with "directory not empty").
func scratchDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gatehouse-blobs-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if i == 20 {
				t.Errorf("removing %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return dir
}

type blobEnv struct {
	t     *testing.T
	ctx   context.Context
	db    *sqlstore.DB
	stack int64
}

func newBlobEnv(t *testing.T, dir string) *blobEnv {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &blobEnv{t: t, ctx: ctx, db: db}
	if err := db.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		s, err := tx.GetStack(o.ID, "p", "s")
		if err == nil {
			e.stack = s.ID
		}
		return err
	}); err == nil {
		return e
	}
	// a fresh store: create the stack
	e.stack, err = createStack(ctx, db)
	e.must(err)
	return e
}

func (e *blobEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *blobEnv) put(version int, data []byte) error {
	return e.db.Update(e.ctx, func(tx gatehouse.Tx) error { return tx.PutCheckpoint(e.stack, version, data) })
}

func (e *blobEnv) get(version int) ([]byte, int, error) {
	var data []byte
	var v int
	err := e.db.View(e.ctx, func(tx gatehouse.Tx) (err error) { data, v, err = tx.GetCheckpoint(e.stack, version); return err })
	return data, v, err
}

// row reads a checkpoint's row as stored: its inline bytes and its blob key.
func (e *blobEnv) row(version int) ([]byte, string) {
	e.t.Helper()
	var data []byte
	var key string
	e.must(e.db.Writer().QueryRowContext(e.ctx, `SELECT data, blob_key FROM checkpoints WHERE stack_id = ? AND version = ?`, e.stack, version).Scan(&data, &key))
	return data, key
}

// TestBlobCheckpoints: large checkpoints go to the blob store under their SHA-256 and the
// row holds only the key; small ones stay inline; both read back, across a reopen, and a
// changed or missing object is an error, never wrong data.
func TestBlobCheckpoints(t *testing.T) {
	for _, scheme := range []string{"mem", "file"} {
		t.Run(scheme, func(t *testing.T) {
			dir, blobDir := scratchDir(t), filepath.Join(scratchDir(t), "blobs")
			rawURL := "mem://"
			if scheme == "file" {
				rawURL = fileURL(blobDir)
			}
			bs := openBlobs(t, rawURL)
			e := newBlobEnv(t, dir)
			e.db.SetBlobStore(bs, 1024)

			small := []byte(`{"version":3,"deployment":{}}`)
			big := bytes.Repeat([]byte(`{"urn":"urn:pulumi:s::p::x:y:Z::r"},`), 200)
			e.must(e.put(1, small))
			e.must(e.put(2, big))
			if data, key := e.row(1); key != "" || !bytes.Equal(data, small) {
				t.Fatalf("small checkpoint row: key %q, %d bytes inline; want inline", key, len(data))
			}
			data, key := e.row(2)
			if key != sqlstore.BlobKey(big) || len(data) != 0 || !strings.HasPrefix(key, "checkpoints/sha256/") {
				t.Fatalf("large checkpoint row: key %q, %d bytes inline; want only the key %s", key, len(data), sqlstore.BlobKey(big))
			}
			if obj, err := bs.Get(e.ctx, key); err != nil || !bytes.Equal(obj, big) {
				t.Fatalf("the object under %s: %d bytes, %v", key, len(obj), err)
			}
			for v, want := range map[int][]byte{1: small, 2: big, 5: big} {
				got, gv, err := e.get(v)
				if err != nil || !bytes.Equal(got, want) || gv > v {
					t.Fatalf("GetCheckpoint(%d) = %d bytes of version %d, %v", v, len(got), gv, err)
				}
			}
			// Replacing a version in place moves it between inline and blob.
			e.must(e.put(1, big))
			e.must(e.put(2, small))
			if _, key := e.row(1); key != sqlstore.BlobKey(big) {
				t.Fatalf("version 1 replaced by a large checkpoint: key %q", key)
			}
			if data, key := e.row(2); key != "" || !bytes.Equal(data, small) {
				t.Fatalf("version 2 replaced by a small checkpoint: key %q", key)
			}
			e.must(e.put(2, big))
			if scheme != "file" {
				return
			}

			// Another store on the same database and directory (another process, a restart).
			e2 := newBlobEnv(t, dir)
			e2.db.SetBlobStore(openBlobs(t, rawURL), 1024)
			if got, v, err := e2.get(-1); err != nil || v != 2 || !bytes.Equal(got, big) {
				t.Fatalf("after reopening: version %d, %d bytes, %v", v, len(got), err)
			}
			// Without the blob store the row cannot be read: an error that says why.
			e3 := newBlobEnv(t, dir)
			_, _, err := e3.get(2)
			if !gatehouse.IsCode(err, gatehouse.EUNAVAILABLE) || !strings.Contains(gatehouse.ErrorMessage(err), "--blob-url") {
				t.Fatalf("reading a blob checkpoint without a blob store: %v", err)
			}
			// A changed object is detected, never served.
			path := filepath.Join(blobDir, filepath.FromSlash(sqlstore.BlobKey(big)))
			e.must(os.WriteFile(path, []byte(`{"tampered":true}`), 0o600))
			if _, _, err := e2.get(2); !gatehouse.IsCode(err, gatehouse.EINTERNAL) {
				t.Fatalf("reading a changed object: %v", err)
			}
			// A missing one too.
			e.must(os.Remove(path))
			if _, _, err := e2.get(2); err == nil {
				t.Fatal("reading a missing object succeeded")
			}
		})
	}
}

// failingBlobs fails every Put.
type failingBlobs struct{ sqlstore.BlobStore }

func (failingBlobs) Put(context.Context, string, []byte) error { return errors.New("bucket down") }

// TestBlobPutFails: when the object cannot be written the checkpoint is not stored at all
// (the request fails and the CLI retries); what was stored before stays.
func TestBlobPutFails(t *testing.T) {
	e := newBlobEnv(t, scratchDir(t))
	e.db.SetBlobStore(openBlobs(t, "mem://"), 0)
	e.must(e.put(1, []byte(`{"v":1}`)))
	e.db.SetBlobStore(failingBlobs{}, 0)
	err := e.put(2, []byte(`{"v":2}`))
	if !gatehouse.IsCode(err, gatehouse.EUNAVAILABLE) {
		t.Fatalf("PutCheckpoint with the blob store down: %v", err)
	}
	var n int
	e.must(e.db.Writer().QueryRowContext(e.ctx, `SELECT COUNT(*) FROM checkpoints WHERE version = 2`).Scan(&n))
	if n != 0 {
		t.Fatal("a checkpoint row was written although its object was not")
	}
	// Small ones stay inline and still work while it is down.
	e.db.SetBlobStore(failingBlobs{}, 1<<20)
	e.must(e.put(3, []byte(`{"v":3}`)))
}
