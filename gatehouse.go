// Package gatehouse holds the domain model of Gatehouse, a self-hosted backend for the
// stock Pulumi CLI: organizations, users, teams, tokens, stacks, updates and audit events,
// the application error type, and the storage interface that every engine implements.
//
// Implementation packages are named after what they wrap (store/sqlite, store/postgres,
// httpapi, secrets, audit, ...) and talk to each other only through the types defined here.
// Wiring happens in cmd/gatehouse.
package gatehouse

// Version is the server version reported by the binary; set at build time with
// -ldflags "-X github.com/gatehouse-dev/gatehouse.Version=...".
var Version = "dev"
