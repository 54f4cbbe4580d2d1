package sso

import (
	"context"
	"strconv"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// KeyLabel is the AAD label of SSO client secrets.
const KeyLabel = "gatehouse/sso-secret/v1:"

// secretKeys is the keyring envelope for client secrets: one data key per organization
// (kept in the meta table), the organization ID as AAD, as webhook secrets.
func secretKeys(stackKeys *secrets.Manager, store gatehouse.Store) *secrets.Manager {
	if stackKeys == nil {
		return nil
	}
	return stackKeys.Derive(metaKeys{store}, secrets.WithLabel(KeyLabel))
}

type metaKeys struct{ store gatehouse.Store }

func metaKey(orgID int64) string { return "sso-key/" + strconv.FormatInt(orgID, 10) }

func (k metaKeys) GetStackKey(ctx context.Context, orgID int64) ([]byte, error) {
	var w []byte
	err := k.store.View(ctx, func(tx gatehouse.Tx) (err error) { w, err = tx.GetMeta(metaKey(orgID)); return err })
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, secrets.ErrNoKey
	}
	return w, err
}

func (k metaKeys) CreateStackKey(ctx context.Context, orgID int64, wrapped []byte) ([]byte, error) {
	var w []byte
	err := k.store.Update(ctx, func(tx gatehouse.Tx) (err error) { w, err = tx.CreateMeta(metaKey(orgID), wrapped); return err })
	return w, err
}

// Seal encrypts an organization's client secret for storage.
func (m *Manager) Seal(ctx context.Context, orgID int64, secret string) ([]byte, error) {
	if m.keys == nil {
		return nil, gatehouse.Errorf(gatehouse.EUNAVAILABLE, "no keyring: client secrets cannot be stored")
	}
	return m.keys.Encrypt(ctx, orgID, []byte(secret))
}

func (m *Manager) open(ctx context.Context, orgID int64, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	if m.keys == nil {
		return "", gatehouse.Errorf(gatehouse.EUNAVAILABLE, "no keyring: client secrets cannot be read")
	}
	b, err := m.keys.Decrypt(ctx, orgID, sealed)
	return string(b), err
}
