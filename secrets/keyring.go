package secrets

import (
	"context"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	neturl "net/url"
	"slices"
	"strings"
	"sync"

	"gocloud.dev/gcerrors"
	gcsecrets "gocloud.dev/secrets"
)

var (
	// ErrWrongKey is returned (wrapped) by VerifyCanary when the keyring is not the one the
	// canary, and so the stored data keys, were made with.
	ErrWrongKey = errors.New("secrets: wrong keyring")

	// ErrUnsupportedScheme is returned (wrapped) by OpenKeyring for a keyring URL whose scheme
	// is unknown or whose driver is not compiled into this binary.
	ErrUnsupportedScheme = errors.New("secrets: unsupported keyring URL scheme")
)

// cloudSchemes are the gocloud.dev/secrets schemes a keyring URL may use besides the local
// ones (the default key file and base64key://).
var cloudSchemes = []string{"awskms", "azurekeyvault", "gcpkms", "hashivault"}

// Keyring is a key-encryption key (KEK) reached through a gocloud.dev/secrets URL. It wraps
// (encrypts) and unwraps data keys; it never encrypts secret values itself. A Keyring is safe
// for concurrent use.
type Keyring struct {
	keeper  *gcsecrets.Keeper
	desc    string
	created bool

	closeOnce sync.Once
	closeErr  error
}

// OpenKeyring opens the keyring at url.
//
// An empty url means the default local key file, <dataDir>/gatehouse.key, holding a random
// 32-byte key in base64. It is created with mode 0600 on first use (dataDir is created with
// mode 0700 if missing); an existing file is refused if it is accessible to group or others,
// is not a regular file, or does not hold exactly one base64 32-byte key. Back this file up:
// without it no stack secret can be decrypted.
//
// Other supported URLs:
//
//	base64key://<32-byte key, base64 (URL-safe or standard)>   (tests; the key is in the URL)
//	awskms://<key id or alias>?region=<region>                  AWS KMS
//	gcpkms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>  Google Cloud KMS
//	azurekeyvault://<vault>.vault.azure.net/keys/<key>           Azure Key Vault
//	hashivault://<transit key name>                             Vault transit; VAULT_SERVER_URL
//	                                                             (or VAULT_ADDR) and VAULT_SERVER_TOKEN
//	                                                             (or VAULT_TOKEN) come from the environment
//
// Cloud credentials always come from the environment; a URL with user info is refused. Opening
// a cloud keyring usually does not contact the KMS: a wrong or unreachable key shows up at the
// first Unwrap, which is why the server must call VerifyCanary at start-up.
func OpenKeyring(ctx context.Context, url, dataDir string) (*Keyring, error) {
	url = strings.TrimSpace(url)
	if url == "" {
		return openKeyFile(dataDir)
	}
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok || scheme == "" {
		// Do not echo the URL: it may hold key material.
		return nil, fmt.Errorf("%w: keyring URL must look like scheme://...; supported schemes: %s",
			ErrUnsupportedScheme, supportedSchemes())
	}
	scheme = strings.ToLower(scheme)
	if scheme == base64KeyScheme {
		return openBase64Key(rest)
	}
	if !slices.Contains(cloudSchemes, scheme) {
		return nil, fmt.Errorf("%w: %q; supported schemes: %s", ErrUnsupportedScheme, scheme, supportedSchemes())
	}
	if !gcsecrets.DefaultURLMux().ValidKeeperScheme(scheme) {
		return nil, fmt.Errorf("%w: no driver for %s:// is registered in this binary", ErrUnsupportedScheme, scheme)
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("secrets: keyring URL for %s:// is not a valid URL", scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("secrets: keyring URL for %s:// must not contain user info; credentials come from the environment", scheme)
	}
	if err := checkQuery(scheme, u.Query()); err != nil {
		return nil, err
	}
	desc := describeURL(u)
	keeper, err := gcsecrets.DefaultURLMux().OpenKeeperURL(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("secrets: open keyring %s: %w", desc, err)
	}
	return &Keyring{keeper: keeper, desc: desc}, nil
}

func supportedSchemes() string {
	return "(empty: default key file), " + base64KeyScheme + "://, " + strings.Join(cloudSchemes, "://, ") + "://"
}

// queryParams are the keyring URL query parameters each scheme accepts (those its gocloud
// driver understands). None of them is secret, so Describe shows them; any other parameter
// is refused, so no unexpected value can reach logs through Describe or driver errors.
var queryParams = map[string][]string{
	"awskms": {"region", "endpoint", "profile", "role", "awssdk", "fips", "dualstack", "hostname_immutable",
		"rate_limiter_capacity", "anonymous", "request_checksum_calculation", "response_checksum_validation"},
	"gcpkms":        {"additional_authenticated_data"},
	"azurekeyvault": {"algorithm"},
	"hashivault":    {"engine"},
}

// checkQuery refuses query parameters the scheme does not accept. The error names the
// parameter, never its value.
func checkQuery(scheme string, q neturl.Values) error {
	for key := range q {
		if slices.Contains(queryParams[scheme], key) {
			continue
		}
		if scheme == "awskms" && strings.HasPrefix(key, "context_") { // KMS encryption context
			continue
		}
		return fmt.Errorf("secrets: keyring URL for %s:// has unsupported query parameter %q", scheme, key)
	}
	return nil
}

// describeURL renders u for logs, without user info or fragment. Query parameters were
// checked by checkQuery.
func describeURL(u *neturl.URL) string {
	d := neturl.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.Query().Encode()}
	return d.String()
}

// Describe returns the keyring's URL for logs and error messages, with secret material
// redacted: a base64key:// value is never shown, a local key appears only as a short key
// ID (a one-way fingerprint) so operators can tell keys apart.
func (k *Keyring) Describe() string { return k.desc }

// Created reports whether OpenKeyring created a new default key file. The server should log
// this prominently: a new key file must be backed up.
func (k *Keyring) Created() bool { return k.created }

// Close releases the keyring's resources. Calling it more than once is harmless.
func (k *Keyring) Close() error {
	k.closeOnce.Do(func() {
		if err := k.keeper.Close(); err != nil {
			k.closeErr = fmt.Errorf("secrets: close keyring %s: %w", k.desc, err)
		}
	})
	return k.closeErr
}

// Wrap encrypts the data key dek with the keyring's KEK.
func (k *Keyring) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	if len(dek) != DataKeySize {
		return nil, fmt.Errorf("secrets: wrap: data key is %d bytes, want %d", len(dek), DataKeySize)
	}
	w, err := k.encrypt(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("secrets: wrap data key with keyring %s: %w", k.desc, err)
	}
	return w, nil
}

// Unwrap decrypts a data key wrapped by Wrap with the same KEK.
func (k *Keyring) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, fmt.Errorf("secrets: unwrap data key with keyring %s: wrapped key is empty", k.desc)
	}
	dek, err := k.decrypt(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("secrets: unwrap data key with keyring %s: %w", k.desc, err)
	}
	if len(dek) != DataKeySize {
		clear(dek)
		return nil, fmt.Errorf("secrets: unwrap data key with keyring %s: result is %d bytes, want %d (not a data key)",
			k.desc, len(dek), DataKeySize)
	}
	return dek, nil
}

// encrypt calls the driver, turning a driver panic (some drivers type-assert on server
// responses) into an error instead of a crashed server.
func (k *Keyring) encrypt(ctx context.Context, plaintext []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, errors.New("keyring driver failed (panic) during encrypt")
		}
	}()
	out, err = k.keeper.Encrypt(ctx, plaintext)
	if err == nil && len(out) == 0 {
		err = errors.New("keyring driver returned an empty ciphertext")
	}
	return out, err
}

// decrypt is encrypt's counterpart.
func (k *Keyring) decrypt(ctx context.Context, ciphertext []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, errors.New("keyring driver failed (panic) during decrypt")
		}
	}()
	return k.keeper.Decrypt(ctx, ciphertext)
}

// isWrongKey reports whether err from a decrypt says the ciphertext was not made with this
// key (as opposed to the KMS being unreachable or refusing access).
func isWrongKey(err error) bool {
	if errors.Is(err, errLocalAuth) || isVaultBadRequest(err) {
		return true
	}
	switch gcerrors.Code(err) {
	case gcerrors.InvalidArgument, gcerrors.NotFound:
		return true
	}
	return false
}

// canaryVersion is the first byte of a canary made by MakeCanary.
const canaryVersion byte = 1

// canaryValue is the known value a canary wraps. It is 64 bytes, not DataKeySize, so that
// Unwrap refuses it: someone able to write the database must not be able to plant the
// canary's wrapped value as a stack's wrapped data key and so make that stack use a known key.
var canaryValue = sha512.Sum512([]byte("gatehouse/keyring-canary/v1"))

// maxCanaryDesc bounds the keyring description stored in a canary.
const maxCanaryDesc = 1024

// MakeCanary wraps a known value with the keyring. The server stores the result once, when
// it first starts on an empty database, and passes it to VerifyCanary at every start. The
// canary also records the (redacted) description of this keyring so a later mismatch can
// name both keyrings. It holds no secret.
func (k *Keyring) MakeCanary(ctx context.Context) ([]byte, error) {
	w, err := k.encrypt(ctx, canaryValue[:])
	if err != nil {
		return nil, fmt.Errorf("secrets: make canary with keyring %s: %w", k.desc, err)
	}
	desc := k.desc
	if len(desc) > maxCanaryDesc {
		desc = desc[:maxCanaryDesc]
	}
	out := []byte{canaryVersion}
	out = binary.AppendUvarint(out, uint64(len(desc)))
	out = append(out, desc...)
	return append(out, w...), nil
}

// parseCanary splits a canary into the maker's description and the wrapped value.
func parseCanary(canary []byte) (madeBy string, wrapped []byte, err error) {
	if len(canary) == 0 {
		return "", nil, errors.New("canary is empty")
	}
	if canary[0] != canaryVersion {
		return "", nil, fmt.Errorf("canary has unknown version %d", canary[0])
	}
	n, l := binary.Uvarint(canary[1:])
	if l <= 0 || n > maxCanaryDesc || uint64(len(canary)-1-l) <= n {
		return "", nil, errors.New("canary is malformed")
	}
	rest := canary[1+l:]
	return string(rest[:n]), rest[n:], nil
}

// VerifyCanary checks that this keyring is the one that made canary (see MakeCanary). On a
// mismatch the error wraps ErrWrongKey and names both keyrings; the server must then refuse
// to start. Other errors mean the check could not be made (KMS unreachable, access denied,
// corrupt canary) and must also stop the server.
func (k *Keyring) VerifyCanary(ctx context.Context, canary []byte) error {
	madeBy, wrapped, err := parseCanary(canary)
	if err != nil {
		return fmt.Errorf("secrets: verify keyring canary: %w", err)
	}
	hint := "start with that keyring, or rewrap the data keys to this one using it"
	if madeBy == k.desc {
		hint = "the names match, so the key behind this name was replaced or the stored canary is corrupt"
	}
	pt, err := k.decrypt(ctx, wrapped)
	if err != nil {
		if isWrongKey(err) {
			return fmt.Errorf("%w: keyring %s cannot unwrap the canary; the stored data keys were wrapped with %s (%s): %w",
				ErrWrongKey, k.desc, madeBy, hint, err)
		}
		return fmt.Errorf("secrets: keyring %s could not be checked against the stored canary "+
			"(is the KMS reachable and are the credentials allowed to decrypt?): %w", k.desc, err)
	}
	ok := subtle.ConstantTimeCompare(pt, canaryValue[:]) == 1
	clear(pt)
	if !ok {
		return fmt.Errorf("%w: keyring %s unwraps the canary to a wrong value; the stored data keys were wrapped with %s (%s)",
			ErrWrongKey, k.desc, madeBy, hint)
	}
	return nil
}

// CanaryMadeBy returns the description of the keyring that made canary, for logs.
func CanaryMadeBy(canary []byte) (string, error) {
	madeBy, _, err := parseCanary(canary)
	if err != nil {
		return "", fmt.Errorf("secrets: read keyring canary: %w", err)
	}
	return madeBy, nil
}

// equalKeys compares two keys in constant time.
func equalKeys(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}
