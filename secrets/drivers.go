package secrets

import (
	"errors"
	"net/http"

	vault "github.com/hashicorp/vault/api"

	// Register awskms://, azurekeyvault://, gcpkms:// and hashivault:// on
	// gocloud.dev/secrets' default URL mux.
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"
	_ "gocloud.dev/secrets/hashivault"
)

// isVaultBadRequest reports whether err is Vault answering 400 Bad Request, which is how
// the transit engine rejects a ciphertext that was not made with the named key.
func isVaultBadRequest(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest
}
