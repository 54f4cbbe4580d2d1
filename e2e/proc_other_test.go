//go:build !unix

package e2e

import "os/exec"

func ownProcessGroup(cmd *exec.Cmd) {}

func terminate(cmd *exec.Cmd) error { return cmd.Process.Kill() }
