package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpShowsNoSecretFromTheEnvironment: a token or database URL taken from the
// environment is never printed as a flag's default by --help (which lands in CI logs).
func TestHelpShowsNoSecretFromTheEnvironment(t *testing.T) {
	const token = "gatehouse_pat_SECRETSECRETSECRETSECRETSECRET0000000"
	const dbURL = "postgres://gatehouse:hunter2-db-password@db:5432/gatehouse"
	t.Setenv("GATEHOUSE_TOKEN", token)
	t.Setenv("PULUMI_ACCESS_TOKEN", token)
	t.Setenv("GATEHOUSE_DATABASE", dbURL)
	for _, v := range []string{"GATEHOUSE_RUNNER_TOKEN", "GATEHOUSE_GITHUB_WEBHOOK_SECRET", "GATEHOUSE_GITHUB_TOKEN", "GATEHOUSE_GITLAB_WEBHOOK_TOKEN", "GATEHOUSE_GITLAB_TOKEN"} {
		t.Setenv(v, token)
	}
	for _, args := range [][]string{
		{"token", "--help"}, {"member", "ls", "--help"}, {"oidc", "issuer", "--help"},
		{"serve", "--help"}, {"bootstrap", "--help"}, {"audit", "verify", "--help"}, {"runner", "--help"},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Fatalf("%v printed no help:\n%s", args, out.String())
		}
		if strings.Contains(out.String(), "SECRETSECRET") || strings.Contains(out.String(), "hunter2") {
			t.Errorf("%v shows a secret from the environment:\n%s", args, out.String())
		}
	}
}
