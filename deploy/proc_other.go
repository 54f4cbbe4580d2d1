//go:build !unix

package deploy

import "os/exec"

func setProcessGroup(cmd *exec.Cmd) {}
