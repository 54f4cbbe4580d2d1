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

// checkpointDomain separates checkpoint signatures from any other use of the key.
const checkpointDomain = "gatehouse/audit/checkpoint/v1"

// A Checkpoint is a signed statement "the chain's event Seq has hash Hash", made at Time by
// the key KeyID. Checkpoints turn the hash chain (which anyone with write access to the
// database could recompute) into tamper evidence: rewriting history changes the hash at a
// checkpointed seq, and a new signature needs the private key, which is not in the database.
//
// A checkpoint also anchors what remains after retention prunes a prefix of the log: the
// store keeps the checkpoint at the last pruned seq, and Verify starts from it.
type Checkpoint struct {
	Seq       int64
	Hash      []byte
	Time      time.Time
	KeyID     string
	Signature []byte
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

// Sign returns a checkpoint for the event seq whose hash is hash, made at t. The time is
// stored in UTC truncated to the microsecond, so that every store engine (PostgreSQL keeps
// microseconds) reads back exactly what was signed.
func (s *Signer) Sign(seq int64, hash []byte, t time.Time) Checkpoint {
	cp := Checkpoint{
		Seq:   seq,
		Hash:  append([]byte(nil), hash...),
		Time:  t.UTC().Truncate(time.Microsecond),
		KeyID: s.keyID,
	}
	cp.Signature = ed25519.Sign(s.key, checkpointMessage(&cp))
	return cp
}

// VerifyCheckpoint checks that cp was signed by the private key of pub.
func VerifyCheckpoint(pub ed25519.PublicKey, cp Checkpoint) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("audit: verifying checkpoint at seq %d: public key has %d bytes, want %d", cp.Seq, len(pub), ed25519.PublicKeySize)
	}
	if want := KeyID(pub); cp.KeyID != want {
		return fmt.Errorf("%w: checkpoint at seq %d names key %q, verifying with %q", ErrBadSignature, cp.Seq, cp.KeyID, want)
	}
	if !ed25519.Verify(pub, checkpointMessage(&cp), cp.Signature) {
		return fmt.Errorf("%w: checkpoint at seq %d", ErrBadSignature, cp.Seq)
	}
	return nil
}

// checkpointMessage is the signed encoding of a checkpoint (everything but the signature).
func checkpointMessage(cp *Checkpoint) []byte {
	b := make([]byte, 0, 128)
	b = appendStr(b, checkpointDomain)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
	b = appendBytes(b, cp.Hash)
	t := cp.Time.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = appendStr(b, cp.KeyID)
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
