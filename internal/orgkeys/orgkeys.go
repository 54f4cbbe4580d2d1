// Package orgkeys keeps one data key per organization in the store's meta table, wrapped by
// the keyring exactly as stack data keys are: the envelope of organization-level secrets
// (webhook secrets, single sign-on client secrets). Each use has its own meta-key prefix and
// AAD label, so a secret sealed for one use never opens as another; `gatehouse keys rotate`
// re-wraps every use's keys (Rewrap).
package orgkeys

import (
	"bytes"
	"context"
	"strconv"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/keystore"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Use names one use of organization keys: the meta-table prefix of its wrapped keys
// ("webhook-key/") and the AAD label of its secrets.
type Use struct {
	Prefix string
	Label  string
}

func (u Use) metaKey(orgID int64) string { return u.Prefix + strconv.FormatInt(orgID, 10) }

// Manager returns the secrets manager of use: the stacks' keyring with one data key per
// organization, created on first use. A secret is sealed under its organization's key with
// the organization ID as AAD.
func Manager(stackKeys *secrets.Manager, store gatehouse.Store, use Use) *secrets.Manager {
	return stackKeys.Derive(keystore.Store{Store: store, Table: use.table()}, secrets.WithLabel(use.Label))
}

// table is use's organization keys in the meta table.
func (u Use) table() keystore.Table {
	return keystore.Table{
		Get: func(tx gatehouse.Tx, orgID int64) ([]byte, error) { return tx.GetMeta(u.metaKey(orgID)) },
		Create: func(tx gatehouse.Tx, orgID int64, wrapped []byte) ([]byte, error) {
			return tx.CreateMeta(u.metaKey(orgID), wrapped)
		},
	}
}

// Rewrap lists and replaces use's organization keys in tx, for key rotation.
func Rewrap(tx gatehouse.Tx, use Use) secrets.RewrapStore { return txMetaKeys{tx, use} }

type txMetaKeys struct {
	tx  gatehouse.Tx
	use Use
}

func (k txMetaKeys) ListStackKeys(context.Context) ([]secrets.StackKey, error) {
	orgs, err := k.tx.ListOrgs()
	if err != nil {
		return nil, err
	}
	var out []secrets.StackKey
	for _, o := range orgs {
		w, err := k.tx.GetMeta(k.use.metaKey(o.ID))
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, secrets.StackKey{StackID: o.ID, Wrapped: w})
	}
	return out, nil
}

func (k txMetaKeys) ReplaceStackKey(_ context.Context, orgID int64, oldWrapped, newWrapped []byte) error {
	w, err := k.tx.GetMeta(k.use.metaKey(orgID))
	if err != nil {
		return err
	}
	if !bytes.Equal(w, oldWrapped) {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "the %s key of organization %d changed meanwhile", k.use.Prefix, orgID)
	}
	return k.tx.SetMeta(k.use.metaKey(orgID), newWrapped)
}
