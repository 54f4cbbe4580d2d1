// Package e2e holds Gatehouse's end-to-end tests. They run the real gatehouse binary
// (built from this module by the tests themselves) as a separate process:
//
//   - TestKill9MidUpdate drives an update through the wire protocol exactly as the CLI
//     sends it, kills the server with SIGKILL in the middle, restarts it on the same data
//     directory and checks that every acknowledged checkpoint survived. It needs nothing
//     but Go and always runs.
//   - TestPulumiCLI drives the stock pulumi CLI (found on PATH) through a whole stack
//     lifecycle against the server. It skips, loudly, where no pulumi, node or npm is
//     available.
//
// Run them with: go test ./e2e/ -v
package e2e
