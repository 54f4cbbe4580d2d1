package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// checkpointDomain separates checkpoint signatures from any other use of the key: v1 is
// the old format (seq, hash, time, key), v2 the chained one (kind, index, previous
// checkpoint too). checkpointLinkDomain separates the digests that chain checkpoints.
const (
	checkpointDomain     = "gatehouse/audit/checkpoint/v1"
	checkpointDomainV2   = "gatehouse/audit/checkpoint/v2"
	checkpointLinkDomain = "gatehouse/audit/checkpoint-link/v2"
)

// A Checkpoint is a signed statement "the chain's event Seq has hash Hash", made at Time by
// the key KeyID. Checkpoints turn the hash chain (which anyone with write access to the
// database could recompute) into tamper evidence: rewriting history changes the hash at a
// checkpointed seq, and a new signature needs the private key, which is not in the database.
//
// A checkpoint also anchors what remains after retention prunes a prefix of the log: the
// store keeps a retention checkpoint at the last pruned seq, and Verify starts from it.
//
// Checkpoints form a chain of their own, in the order they were made (which is not seq
// order: a retention checkpoint is usually older than the newest periodic one): each names
// the one made before it (PrevSeq, Prev = its Digest) and its own position (Index), and the
// signature covers them and the Kind. Removing a checkpoint from the middle of the chain,
// or passing a periodic checkpoint off as a retention one, is therefore detected.
//
// Index 0 marks a checkpoint in the old format (written before checkpoints were chained):
// its signature covers only Seq, Hash, Time and KeyID, so its Kind is not vouched for.
type Checkpoint struct {
	Seq       int64
	Hash      []byte
	Time      time.Time
	KeyID     string
	Signature []byte
	// Kind is gatehouse.CheckpointPeriodic or gatehouse.CheckpointRetention.
	Kind string
	// Index is the position in the checkpoint chain: 1 for the first chained checkpoint,
	// 0 for one in the old, unchained format.
	Index int64
	// PrevSeq and Prev are the Seq and the Digest of the checkpoint made just before this
	// one (0 and nil when there was none).
	PrevSeq int64
	Prev    []byte
}

// ErrBadSignature is returned (wrapped) by VerifyCheckpoint for a checkpoint whose signature
// does not verify under the given key.
var ErrBadSignature = errors.New("audit: checkpoint signature invalid")

// KeyID returns the identifier of a checkpoint signing key: "ed25519:" followed by the
// first 8 bytes of the SHA-256 of the public key, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Signer signs checkpoints with an Ed25519 key. It is safe for concurrent use.
type Signer struct {
	key   ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
}

// NewSigner returns a Signer for key (for example from LoadOrCreateSigningKey).
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: signing key has %d bytes, want an Ed25519 private key (%d)", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	return &Signer{key: key, pub: pub, keyID: KeyID(pub)}, nil
}

// Public returns the public key that verifies the signer's checkpoints.
func (s *Signer) Public() ed25519.PublicKey { return s.pub }

// KeyID returns KeyID(s.Public()).
func (s *Signer) KeyID() string { return s.keyID }

// Sign returns a chained checkpoint of the given kind for the event seq whose hash is hash,
// made at t, following prev: the newest checkpoint made before it, of any kind and format
// (nil when there is none). The time is stored in UTC truncated to the microsecond, so that
// every store engine (PostgreSQL keeps microseconds) reads back exactly what was signed.
func (s *Signer) Sign(kind string, prev *Checkpoint, seq int64, hash []byte, t time.Time) Checkpoint {
	cp := Checkpoint{
		Seq:   seq,
		Hash:  append([]byte(nil), hash...),
		Time:  t.UTC().Truncate(time.Microsecond),
		KeyID: s.keyID,
		Kind:  kind,
		Index: 1,
	}
	if prev != nil {
		cp.Index = prev.Index + 1
		cp.PrevSeq = prev.Seq
		cp.Prev = prev.Digest()
	}
	cp.Signature = ed25519.Sign(s.key, checkpointMessage(&cp))
	return cp
}

// signV1 signs a checkpoint in the old, unchained format (for tests of old logs).
func (s *Signer) signV1(kind string, seq int64, hash []byte, t time.Time) Checkpoint {
	cp := Checkpoint{Seq: seq, Hash: append([]byte(nil), hash...), Time: t.UTC().Truncate(time.Microsecond), KeyID: s.keyID, Kind: kind}
	cp.Signature = ed25519.Sign(s.key, checkpointMessage(&cp))
	return cp
}

// Digest identifies a checkpoint in the checkpoint chain: SHA-256 over a domain string and
// everything the signature covers.
func (cp *Checkpoint) Digest() []byte {
	b := appendStr(nil, checkpointLinkDomain)
	b = append(b, checkpointMessage(cp)...)
	sum := sha256.Sum256(b)
	return sum[:]
}

// Chained reports whether cp is in the chained format (Index > 0).
func (cp *Checkpoint) Chained() bool { return cp.Index > 0 }

// VerifyCheckpoint checks that cp was signed by the private key of pub.
func VerifyCheckpoint(pub ed25519.PublicKey, cp Checkpoint) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("audit: verifying checkpoint at seq %d: public key has %d bytes, want %d", cp.Seq, len(pub), ed25519.PublicKeySize)
	}
	if want := KeyID(pub); cp.KeyID != want {
		return fmt.Errorf("%w: checkpoint at seq %d names key %q, verifying with %q", ErrBadSignature, cp.Seq, cp.KeyID, want)
	}
	if cp.Index < 0 || !ed25519.Verify(pub, checkpointMessage(&cp), cp.Signature) {
		return fmt.Errorf("%w: %s checkpoint at seq %d", ErrBadSignature, cp.describeKind(), cp.Seq)
	}
	return nil
}

// describeKind names the checkpoint's kind and position for messages.
func (cp *Checkpoint) describeKind() string {
	if cp.Index == 0 {
		return cp.Kind + " (old format)"
	}
	return fmt.Sprintf("%s #%d", cp.Kind, cp.Index)
}

// checkpointMessage is the signed encoding of a checkpoint (everything but the signature):
//
//	v1 (Index 0): str(v1 domain) u64(Seq) bytes(Hash) i64(unix s) u32(ns) str(KeyID)
//	v2:           str(v2 domain) str(Kind) u64(Index) u64(Seq) bytes(Hash) i64(unix s)
//	              u32(ns) str(KeyID) u64(PrevSeq) bytes(Prev)
func checkpointMessage(cp *Checkpoint) []byte {
	b := make([]byte, 0, 192)
	t := cp.Time.UTC()
	if cp.Index == 0 {
		b = appendStr(b, checkpointDomain)
		b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
		b = appendBytes(b, cp.Hash)
		b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
		b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
		b = appendStr(b, cp.KeyID)
		return b
	}
	b = appendStr(b, checkpointDomainV2)
	b = appendStr(b, cp.Kind)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.Index))
	b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
	b = appendBytes(b, cp.Hash)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = appendStr(b, cp.KeyID)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.PrevSeq))
	b = appendBytes(b, cp.Prev)
	return b
}

// LoadOrCreateSigningKey reads the Ed25519 checkpoint signing key at path (PEM, PKCS #8
// "PRIVATE KEY", as written by `openssl genpkey -algorithm ed25519`), or creates one with
// mode 0600 if the file does not exist. It refuses a key file that group or others may
// read or write, or that is not a regular file. Two processes starting at once end up with
// the same key: the file is written under a temporary name and linked into place, and the
// loser of the race reads the winner's key.
func LoadOrCreateSigningKey(path string) (ed25519.PrivateKey, error) {
	key, err := loadSigningKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: creating signing key directory: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit: generating signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(dir, ".audit-signing-key-*")
	if err != nil {
		return nil, fmt.Errorf("audit: creating signing key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: creating signing key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: writing signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: writing signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("audit: writing signing key: %w", err)
	}
	// Link fails if path exists: never overwrite a key another process just created.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadSigningKey(path)
		}
		return nil, fmt.Errorf("audit: installing signing key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return priv, nil
}

func loadSigningKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path) // follows symlinks: Kubernetes mounts secrets that way
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("audit: signing key %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit: refusing signing key %s: mode %04o lets group or others access it (chmod 600 it)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: reading signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit: signing key %s is not a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: parsing signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: signing key %s is a %T, want Ed25519", path, k)
	}
	return priv, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block (PKIX), the form verifiers are
// given (for example `gatehouse audit verify --public-key`).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" block holding an Ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("audit: not a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: parsing public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: public key is a %T, want Ed25519", k)
	}
	return pub, nil
}
