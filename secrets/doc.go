// Package secrets implements envelope encryption of Pulumi stack secrets.
//
// Every stack has its own random 256-bit data key (DEK). Secret values are sealed with
// AES-256-GCM under the stack's DEK (see Seal and Open), with the stack ID as additional
// authenticated data so a ciphertext of one stack never opens as another stack's. The DEK
// is stored only wrapped (encrypted) by a key-encryption key (KEK) held by a Keyring: a
// local key file by default, or a cloud KMS / Vault key reached through a gocloud.dev/secrets
// URL. Manager ties the two together for the encrypt/decrypt endpoints and keeps unwrapped
// DEKs in a bounded in-memory cache so the KMS is not called per request.
//
// At start-up the server proves it holds the right KEK with a canary (Keyring.MakeCanary,
// Keyring.VerifyCanary) and refuses to start on a mismatch instead of creating new keys that
// the old data can never be read with. Rewrap moves every stored DEK from one keyring to
// another without touching the encrypted data.
//
// Nothing in this package puts key material or plaintext into an error message; keyring
// URLs appear in messages and logs only through Keyring.Describe, which redacts secrets.
package secrets
