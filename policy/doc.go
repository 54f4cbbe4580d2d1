// Package policy is policy as code enforced by the server: policy packs published by an
// organization and required of stacks through policy groups (the stock CLI downloads and
// runs the packs on every update and preview of a stack a group selects), the policy
// results the CLI reports, and the organization's approved providers, which Gatehouse
// enforces itself on the state an update writes (see Providers).
//
// The functions here are the domain rules; httpapi calls them inside its transactions and
// authorization stays in authz.
package policy
