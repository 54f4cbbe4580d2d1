//go:build unix

package deploy

import (
	"os/exec"
	"syscall"
)

// setProcessGroup runs cmd in its own process group, killed whole when the run is stopped
// (a pulumi process leaves plugins and language hosts behind otherwise).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
