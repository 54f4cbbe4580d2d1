// Package keystore adapts a gatehouse.Store to the secrets manager's key storage
// (secrets.KeyStore): one table of wrapped data keys (the stacks', the environments', an
// organization-key use's in the meta table), each key read in its own read transaction and
// created in its own write transaction.
package keystore

import (
	"context"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Table reads and creates the wrapped data keys of one kind. Get answers ENOTFOUND when
// id has no key; Create stores wrapped unless a key exists and returns the key stored.
type Table struct {
	Get    func(tx gatehouse.Tx, id int64) ([]byte, error)
	Create func(tx gatehouse.Tx, id int64, wrapped []byte) ([]byte, error)
}

// Stacks is the stacks' data keys.
var Stacks = Table{Get: gatehouse.Tx.GetStackKey, Create: gatehouse.Tx.CreateStackKey}

// Store adapts Table of Store to secrets.KeyStore; the zero Table is Stacks.
type Store struct {
	Store gatehouse.Store
	Table Table
}

func (k Store) table() Table {
	if k.Table.Get == nil {
		return Stacks
	}
	return k.Table
}

// GetStackKey implements secrets.KeyStore: a missing key is secrets.ErrNoKey.
func (k Store) GetStackKey(ctx context.Context, id int64) ([]byte, error) {
	var w []byte
	err := k.Store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		w, err = k.table().Get(tx, id)
		return err
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, secrets.ErrNoKey
	}
	return w, err
}

// CreateStackKey implements secrets.KeyStore.
func (k Store) CreateStackKey(ctx context.Context, id int64, wrapped []byte) ([]byte, error) {
	var w []byte
	err := k.Store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		w, err = k.table().Create(tx, id, wrapped)
		return err
	})
	return w, err
}
