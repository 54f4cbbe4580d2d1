// Package stackkeys adapts a gatehouse.Store to the secrets manager's key storage: the
// stacks' wrapped data keys, as the server's stack secrets and the deployment settings'
// secrets (sealed with the same keys under their own label) read and create them.
package stackkeys

import (
	"context"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Store adapts a gatehouse.Store to secrets.KeyStore.
type Store struct{ Store gatehouse.Store }

// GetStackKey implements secrets.KeyStore.
func (k Store) GetStackKey(ctx context.Context, stackID int64) ([]byte, error) {
	var w []byte
	err := k.Store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		w, err = tx.GetStackKey(stackID)
		return err
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, secrets.ErrNoKey
	}
	return w, err
}

// CreateStackKey implements secrets.KeyStore.
func (k Store) CreateStackKey(ctx context.Context, stackID int64, wrapped []byte) ([]byte, error) {
	var w []byte
	err := k.Store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		w, err = tx.CreateStackKey(stackID, wrapped)
		return err
	})
	return w, err
}
