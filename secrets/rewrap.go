package secrets

import (
	"context"
	"errors"
	"fmt"
)

// StackKey is a stack's wrapped data key.
type StackKey struct {
	StackID int64
	Wrapped []byte
}

// RewrapStore lists and replaces wrapped data keys for key rotation.
type RewrapStore interface {
	// ListStackKeys returns every stack's wrapped data key.
	ListStackKeys(ctx context.Context) ([]StackKey, error)
	// ReplaceStackKey sets the stack's wrapped key to newWrapped if it is still oldWrapped
	// (compare-and-swap), and fails otherwise.
	ReplaceStackKey(ctx context.Context, stackID int64, oldWrapped, newWrapped []byte) error
}

// maxRewrapErrors bounds how many per-stack failures Rewrap reports.
const maxRewrapErrors = 20

// Rewrap re-wraps every stored data key from keyring from to keyring to and returns how many
// keys it replaced. Data keys, and so every encrypted secret, stay the same; running servers
// keep working (their caches hold unwrapped keys).
//
// Each new wrapping is unwrapped again with to and compared with the data key before it
// replaces the old one. A key that from cannot unwrap but to can is taken as already
// rewrapped and skipped, so an interrupted Rewrap can simply be run again. A stack whose key
// fails does not stop the others; the returned error lists the failures (up to 20) and Rewrap
// must then be run again after fixing them. It stops at once if ctx is done.
//
// Rotation procedure: verify the stored canary with from, Rewrap, then store
// to.MakeCanary() in place of the canary, and restart the servers with the new keyring.
func Rewrap(ctx context.Context, from, to *Keyring, rs RewrapStore) (n int, err error) {
	keys, err := rs.ListStackKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("secrets: rewrap: list data keys: %w", err)
	}
	var errs []error
	failed := 0
	for _, sk := range keys {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("secrets: rewrap stopped after %d keys: %w", n, err)
		}
		replaced, err := rewrapOne(ctx, from, to, rs, sk)
		if err != nil {
			if ctx.Err() != nil {
				return n, fmt.Errorf("secrets: rewrap stopped after %d keys: %w", n, err)
			}
			failed++
			if len(errs) < maxRewrapErrors {
				errs = append(errs, err)
			}
			continue
		}
		if replaced {
			n++
		}
	}
	if failed > 0 {
		return n, fmt.Errorf("secrets: rewrap: %d of %d data keys failed (run again once fixed): %w",
			failed, len(keys), errors.Join(errs...))
	}
	return n, nil
}

// rewrapOne rewraps one key; it reports false if the key was already wrapped by to.
func rewrapOne(ctx context.Context, from, to *Keyring, rs RewrapStore, sk StackKey) (bool, error) {
	dek, err := from.Unwrap(ctx, sk.Wrapped)
	if err != nil {
		if done, derr := to.Unwrap(ctx, sk.Wrapped); derr == nil {
			clear(done)
			return false, nil
		}
		return false, fmt.Errorf("stack %d: %w", sk.StackID, err)
	}
	defer clear(dek)
	newWrapped, err := to.Wrap(ctx, dek)
	if err != nil {
		return false, fmt.Errorf("stack %d: %w", sk.StackID, err)
	}
	check, err := to.Unwrap(ctx, newWrapped)
	if err != nil {
		return false, fmt.Errorf("stack %d: verify new wrapping: %w", sk.StackID, err)
	}
	same := equalKeys(check, dek)
	clear(check)
	if !same {
		return false, fmt.Errorf("stack %d: verify new wrapping: keyring %s returned a different data key", sk.StackID, to.Describe())
	}
	if err := rs.ReplaceStackKey(ctx, sk.StackID, sk.Wrapped, newWrapped); err != nil {
		return false, fmt.Errorf("stack %d: replace data key: %w", sk.StackID, err)
	}
	return true, nil
}
