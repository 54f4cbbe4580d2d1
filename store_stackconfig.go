package gatehouse

// StackConfig is a stack's remote configuration (`pulumi stack init --remote-config`, the
// CLI's PUT /api/stacks/{org}/{project}/{stack}/config): the ESC environment that holds
// the stack's configuration, and the secrets provider settings that would otherwise be in
// Pulumi.<stack>.yaml. None of it is a secret value: EncryptedKey is a data key already
// encrypted by the stack's KMS, EncryptionSalt a passphrase provider's public salt.
type StackConfig struct {
	Environment     string
	SecretsProvider string
	EncryptedKey    string
	EncryptionSalt  string
}

// StackConfigTx is the storage of remote stack configurations (part of Tx). A stack's
// configuration goes with it when it is deleted and stays with it when it is renamed.
type StackConfigTx interface {
	// GetStackConfig returns the stack's remote configuration; ENOTFOUND when it has none.
	GetStackConfig(stackID int64) (*StackConfig, error)
	// PutStackConfig sets (adds or replaces) the stack's remote configuration; ENOTFOUND
	// when the stack does not exist.
	PutStackConfig(stackID int64, c *StackConfig) error
	// DeleteStackConfig removes it; ENOTFOUND when the stack has none.
	DeleteStackConfig(stackID int64) error
}
