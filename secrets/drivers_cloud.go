//go:build gatehouse_cloudkms

package secrets

// The cloud KMS drivers. They need go.sum entries for the AWS, Google Cloud and Azure SDKs
// that the module does not have yet; until they are added, build with -tags
// gatehouse_cloudkms to include them. Once they are, drop the build constraints on this
// file and on drivers_nocloud.go.

import (
	// Register awskms://, azurekeyvault:// and gcpkms:// on gocloud.dev/secrets' default URL mux.
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"
)

// cloudKMSCompiled reports whether the awskms, azurekeyvault and gcpkms drivers are linked in.
const cloudKMSCompiled = true

// missingDriverHint explains why a cloud scheme has no driver.
const missingDriverHint = "driver did not register"
