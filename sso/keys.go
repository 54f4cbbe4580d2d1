package sso

import (
	"context"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/orgkeys"
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
	return Keys(stackKeys, store)
}

// keyUse is where SSO data keys live: meta "sso-key/<org ID>".
var keyUse = orgkeys.Use{Prefix: "sso-key/", Label: KeyLabel}

// Keys returns the secrets manager of SSO client secrets (one data key per organization).
func Keys(stackKeys *secrets.Manager, store gatehouse.Store) *secrets.Manager {
	return orgkeys.Manager(stackKeys, store, keyUse)
}

// RewrapKeys adapts one transaction's SSO data keys to secrets.RewrapStore, for key rotation.
func RewrapKeys(tx gatehouse.Tx) secrets.RewrapStore { return orgkeys.Rewrap(tx, keyUse) }

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
