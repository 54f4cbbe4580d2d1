package httpapi

import (
	"encoding/json"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	fastjson "github.com/segmentio/encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// A deployment names the secrets manager its secrets were encrypted with
// (deployment.secrets_providers). For the service secrets manager that is a stack
// (owner, project, stack), and the CLI decrypts the state's secrets through that stack's
// /decrypt with the credentials of whoever runs it. A state of stack A that names stack B
// is a confused deputy (found in review): someone who may write A but may not decrypt B
// imports B's ciphertexts (read from B's export) into A under B's provider; the next
// person who may decrypt B and runs `pulumi up` (or refresh, or export --show-secrets) on
// A has the CLI decrypt them through B and store them again under A's key, where the
// writer of A decrypts them. The stock CLI always writes a state under its own stack's
// provider (`pulumi stack import` re-encrypts a foreign one for the target stack), so
// every state write (create with state, import, checkpoints, journal entries) must name
// the stack it is written to when it names a service secrets manager.

// secretsProviderOf is the one field of a deployment the check needs.
type secretsProviderOf struct {
	SecretsProviders *apitype.SecretsProvidersV1 `json:"secrets_providers"`
}

// checkDeploymentSecrets refuses a deployment (the object under "deployment") whose
// service secrets manager is another stack's than org/project/stack.
func checkDeploymentSecrets(dep []byte, org, project, stack string) error {
	var d secretsProviderOf
	if _, err := fastjson.Parse(dep, &d, fastjson.ZeroCopy); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid deployment: secrets_providers cannot be read")
	}
	return checkSecretsProvider(d.SecretsProviders, org, project, stack)
}

// checkUntypedSecrets is checkDeploymentSecrets for a whole UntypedDeployment document.
func checkUntypedSecrets(doc []byte, org, project, stack string) error {
	var d struct {
		Deployment secretsProviderOf `json:"deployment"`
	}
	if _, err := fastjson.Parse(doc, &d, fastjson.ZeroCopy); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid deployment: secrets_providers cannot be read")
	}
	return checkSecretsProvider(d.Deployment.SecretsProviders, org, project, stack)
}

// checkSecretsProvider refuses a service secrets manager of another stack.
func checkSecretsProvider(sp *apitype.SecretsProvidersV1, org, project, stack string) error {
	if sp == nil || sp.Type != "service" {
		return nil
	}
	var st struct {
		Owner   string `json:"owner"`
		Project string `json:"project"`
		Stack   string `json:"stack"`
	}
	if err := json.Unmarshal(sp.State, &st); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid deployment: the service secrets manager's state cannot be read")
	}
	if strings.EqualFold(st.Owner, org) && st.Project == project && st.Stack == stack {
		return nil
	}
	return gatehouse.Errorf(gatehouse.EINVALID,
		"the deployment's secrets are encrypted for stack %s/%s/%s (its secrets_providers), not for this stack %s/%s/%s: "+
			"a state is stored only with this stack's own service secrets manager (`pulumi stack import` re-encrypts a foreign one for the target stack)",
		truncate(st.Owner, 100), truncate(st.Project, 100), truncate(st.Stack, 100), org, project, stack)
}

// checkJournalSecrets applies checkSecretsProvider to the journal entries that set the
// secrets manager (a secrets-manager entry, a write entry's new snapshot).
func checkJournalSecrets(entries []apitype.JournalEntry, org, project, stack string) error {
	for i := range entries {
		e := &entries[i]
		if err := checkSecretsProvider(e.SecretsProvider, org, project, stack); err != nil {
			return err
		}
		if e.NewSnapshot != nil {
			if err := checkSecretsProvider(e.NewSnapshot.SecretsProviders, org, project, stack); err != nil {
				return err
			}
		}
	}
	return nil
}
