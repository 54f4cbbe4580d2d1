//go:build !gatehouse_cloudkms

package secrets

// cloudKMSCompiled reports whether the awskms, azurekeyvault and gcpkms drivers are linked in.
const cloudKMSCompiled = false

// missingDriverHint explains why a cloud scheme has no driver.
const missingDriverHint = "built without the cloud KMS drivers; rebuild with -tags gatehouse_cloudkms"
