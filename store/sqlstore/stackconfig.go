package sqlstore

import (
	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Remote stack configurations (migration 0014).

func (t *tx) GetStackConfig(stackID int64) (*gatehouse.StackConfig, error) {
	var c gatehouse.StackConfig
	err := t.queryRow(`SELECT environment, secrets_provider, encrypted_key, encryption_salt FROM stack_configs WHERE stack_id = ?`, stackID).
		Scan(&c.Environment, &c.SecretsProvider, &c.EncryptedKey, &c.EncryptionSalt)
	if err != nil {
		return nil, one(err, "the stack has no remote configuration")
	}
	return &c, nil
}

func (t *tx) PutStackConfig(stackID int64, c *gatehouse.StackConfig) error {
	var n int
	if err := t.queryRow(`SELECT COUNT(*) FROM stacks WHERE id = ?`, stackID).Scan(&n); err != nil {
		return dbErr(err)
	}
	if n == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	_, err := t.exec(`INSERT INTO stack_configs (stack_id, environment, secrets_provider, encrypted_key, encryption_salt, modified) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (stack_id) DO UPDATE SET environment = excluded.environment, secrets_provider = excluded.secrets_provider,
		encrypted_key = excluded.encrypted_key, encryption_salt = excluded.encryption_salt, modified = excluded.modified`,
		stackID, validText(c.Environment), validText(c.SecretsProvider), validText(c.EncryptedKey), validText(c.EncryptionSalt), ns(t.now))
	return err
}

func (t *tx) DeleteStackConfig(stackID int64) error {
	r, err := t.exec(`DELETE FROM stack_configs WHERE stack_id = ?`, stackID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "the stack has no remote configuration")
	}
	return nil
}
