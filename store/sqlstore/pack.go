package sqlstore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Checkpoint packing. While an update runs, its checkpoint row is overwritten with each
// PATCH as it arrives ('raw'), so the hot path does no compression. When the update ends,
// the version's final state is packed: a keyframe ('zfull', zstd) at most every
// keyframeEvery versions, otherwise 'zdelta': zstd with the nearest earlier keyframe as a
// raw dictionary, which for a state that changed in one resource is a few hundred bytes.
// Reading a version needs at most its keyframe. Rows kept in object storage are not packed.

const keyframeEvery = 16

var (
	zenc     *zstd.Encoder // without a dictionary; safe for concurrent EncodeAll
	zdec     *zstd.Decoder
	zinitErr error
	zonce    sync.Once
)

func zstdInit() error {
	zonce.Do(func() {
		zenc, zinitErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if zinitErr == nil {
			zdec, zinitErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		}
	})
	return zinitErr
}

// packCheckpoint packs the final state of (stackID, version) if it is stored raw inline.
func (t *tx) packCheckpoint(stackID int64, version int) error {
	if err := zstdInit(); err != nil {
		return err
	}
	var data []byte
	var blobKey, format string
	err := t.queryRow(`SELECT data, blob_key, format FROM checkpoints WHERE stack_id = ? AND version = ?`, stackID, version).Scan(&data, &blobKey, &format)
	if err != nil {
		if isNotFound(one(err, "")) {
			return nil
		}
		return dbErr(err)
	}
	if format != "raw" || blobKey != "" || len(data) == 0 {
		return nil
	}
	// The nearest earlier keyframe, if close enough.
	var kv int
	var kdata []byte
	var kblob, kformat string
	err = t.queryRow(`SELECT version, data, blob_key, format FROM checkpoints WHERE stack_id = ? AND version < ? AND format IN ('zfull', 'raw') ORDER BY version DESC LIMIT 1`,
		stackID, version).Scan(&kv, &kdata, &kblob, &kformat)
	if err != nil && !isNotFound(one(err, "")) {
		return dbErr(err)
	}
	if err == nil && version-kv < keyframeEvery && kformat == "zfull" && kblob == "" {
		dict, err := zdec.DecodeAll(kdata, nil)
		if err != nil {
			return gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored keyframe %d is unreadable", kv)
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(uint32(kv)+1, dict), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		packed := enc.EncodeAll(data, nil)
		enc.Close()
		_, err = t.exec(`UPDATE checkpoints SET data = ?, format = 'zdelta', base_version = ? WHERE stack_id = ? AND version = ?`, packed, kv, stackID, version)
		return err
	}
	packed := zenc.EncodeAll(data, nil)
	_, err = t.exec(`UPDATE checkpoints SET data = ?, format = 'zfull', base_version = 0 WHERE stack_id = ? AND version = ?`, packed, stackID, version)
	return err
}

// unpackCheckpoint turns a stored row's bytes back into the checkpoint.
func (t *tx) unpackCheckpoint(stackID int64, data []byte, format string, base int) ([]byte, error) {
	switch format {
	case "", "raw":
		return data, nil
	case "zfull", "zdelta":
	default:
		return nil, gatehouse.Errorf(gatehouse.EINTERNAL, "unknown checkpoint format %q", format)
	}
	if err := zstdInit(); err != nil {
		return nil, err
	}
	if format == "zfull" {
		out, err := zdec.DecodeAll(data, nil)
		if err != nil {
			return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
		}
		return out, nil
	}
	var kdata []byte
	var kformat string
	if err := t.queryRow(`SELECT data, format FROM checkpoints WHERE stack_id = ? AND version = ?`, stackID, base).Scan(&kdata, &kformat); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "the keyframe of a stored checkpoint is missing")
	}
	if kformat != "zfull" {
		return nil, gatehouse.Errorf(gatehouse.EINTERNAL, "the keyframe of a stored checkpoint has format %q", kformat)
	}
	dict, err := zdec.DecodeAll(kdata, nil)
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored keyframe is unreadable")
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(uint32(base)+1, dict), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
	}
	return out, nil
}

var _ = errors.New
var _ = fmt.Sprint
var _ = bytes.Equal
