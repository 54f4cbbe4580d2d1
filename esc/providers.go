package esc

import (
	"context"
	"fmt"
	"sort"
	"sync"

	pesc "github.com/pulumi/esc"
	"github.com/pulumi/esc/schema"
)

// Registry is the provider registry (eval.ProviderLoader). A provider is added with
// Register, without touching the evaluator. Providers Pulumi's service offers that need a
// cloud this server does not talk to are known by name: a definition using them checks
// (their values are unknown), and opening it fails with a clear diagnostic.
type Registry struct {
	mu        sync.RWMutex
	providers map[string]pesc.Provider
}

// Unsupported are the providers of Pulumi's service that this server does not implement.
var Unsupported = []string{
	"aws-login", "aws-secrets", "aws-parameter-store", "azure-login", "azure-secrets", "azure-app-configuration",
	"gcp-login", "gcp-secrets", "vault-login", "vault-secrets", "1password-secrets", "doppler-secrets",
	"infisical-login", "infisical-secrets", "oci-login", "snowflake-login", "pulumi-scim",
	"kubernetes-login", "cloudflare-login", "github-app-login",
}

// NewRegistry returns a registry with the providers this server runs: pulumi-stacks.
func NewRegistry() *Registry {
	return &Registry{providers: map[string]pesc.Provider{"pulumi-stacks": PulumiStacksProvider{}}}
}

// Register adds (or replaces) a provider.
func (r *Registry) Register(name string, p pesc.Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.providers[name] = p
}

// Names lists the registered providers.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.providers))
	for n := range r.providers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LoadProvider implements eval.ProviderLoader.
func (r *Registry) LoadProvider(_ context.Context, name string) (pesc.Provider, error) {
	r.mu.RLock()
	p, ok := r.providers[name]
	r.mu.RUnlock()
	if ok {
		return p, nil
	}
	for _, u := range Unsupported {
		if u == name {
			return unsupported{name}, nil
		}
	}
	return nil, fmt.Errorf("unknown provider %q", name)
}

// LoadRotator implements eval.ProviderLoader: no rotators yet.
func (r *Registry) LoadRotator(_ context.Context, name string) (pesc.Rotator, error) {
	return nil, fmt.Errorf("rotator %q is not supported by this server", name)
}

// unsupported is a known provider this server cannot run.
type unsupported struct{ name string }

func (u unsupported) Schema() (inputs, outputs *schema.Schema) {
	return schema.Always(), schema.Always()
}

func (u unsupported) Open(context.Context, map[string]pesc.Value, pesc.EnvExecContext) (pesc.Value, error) {
	return pesc.Value{}, fmt.Errorf("provider %q is not supported by this server (Gatehouse runs no cloud providers yet); use static values or fn::secret", u.name)
}
