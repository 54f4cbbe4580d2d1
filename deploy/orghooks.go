package deploy

import (
	"context"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/orgkeys"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Organizations' own VCS webhook secrets. The server-wide secret (Options.GitHub and
// GitLab's WebhookSecret) is one secret for every organization: whoever holds it (every
// repository admin who configured the webhook, in any organization) can sign a delivery
// naming any repository, and so start runs of any organization's stacks. An organization
// that sets its own secret gets its own delivery URL, whose deliveries are checked with
// that secret and trigger only its stacks; the server-wide URL no longer reaches it.

// VCSKeyLabel is the AAD label of organizations' VCS webhook secrets.
const VCSKeyLabel = "gatehouse/deploy-vcs-secret/v1:"

// vcsKeyUse is where their data keys live: meta "deploy-vcs-key/<org ID>".
var vcsKeyUse = orgkeys.Use{Prefix: "deploy-vcs-key/", Label: VCSKeyLabel}

// VCSKeys returns the secrets manager of organizations' VCS webhook secrets (one data key
// per organization, the organization ID as AAD).
func VCSKeys(stackKeys *secrets.Manager, store gatehouse.Store) *secrets.Manager {
	return orgkeys.Manager(stackKeys, store, vcsKeyUse)
}

// RewrapVCSKeys adapts one transaction's VCS webhook data keys to secrets.RewrapStore, for
// key rotation.
func RewrapVCSKeys(tx gatehouse.Tx) secrets.RewrapStore { return orgkeys.Rewrap(tx, vcsKeyUse) }

// IsProvider reports whether p is a VCS provider webhooks come from.
func IsProvider(p string) bool { return p == "github" || p == "gitlab" }

// Limits of an organization's webhook secret.
const (
	MinVCSSecret = 16
	MaxVCSSecret = 256
)

// CheckVCSSecret refuses a secret too short to resist guessing (GitLab compares its token
// as it is; a GitHub secret is an HMAC key), too long, or with characters a header cannot
// carry (printable ASCII without spaces).
func CheckVCSSecret(secret string) error {
	if len(secret) < MinVCSSecret || len(secret) > MaxVCSSecret {
		return gatehouse.Errorf(gatehouse.EINVALID, "a webhook secret has %d to %d characters", MinVCSSecret, MaxVCSSecret)
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' {
			return gatehouse.Errorf(gatehouse.EINVALID, "a webhook secret is printable ASCII without spaces")
		}
	}
	return nil
}

// GenerateVCSSecret returns a new random secret (256 bits, hex).
func GenerateVCSSecret() (string, error) { return randomHex(32) }

// SealVCSSecret checks and seals an organization's webhook secret for storage.
func (s *Service) SealVCSSecret(ctx context.Context, orgID int64, secret string) ([]byte, error) {
	if err := CheckVCSSecret(secret); err != nil {
		return nil, err
	}
	return s.vcsKeys.Encrypt(ctx, orgID, []byte(secret))
}

// OrgVCSSecret returns the webhook secret of provider that organization orgName set, and
// the organization; an unknown organization, or one without such a secret, is (nil, "").
func (s *Service) OrgVCSSecret(ctx context.Context, orgName, provider string) (*gatehouse.Org, string, error) {
	var org *gatehouse.Org
	var sealed []byte
	err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(orgName)
		if err != nil {
			return err
		}
		org = o
		v, err := tx.GetDeployVCSSecret(o.ID, provider)
		if err != nil {
			return err
		}
		sealed = v.Sealed
		return nil
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return org, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	b, err := s.vcsKeys.Decrypt(ctx, org.ID, sealed)
	if err != nil {
		return nil, "", err
	}
	return org, string(b), nil
}

// BaseURL is the server's public base URL: Options.ConsoleURL, else base (the URL the
// request came to).
func (s *Service) BaseURL(base string) string {
	if s.opts.ConsoleURL != "" {
		base = s.opts.ConsoleURL
	}
	return base
}
