//go:build linux

package deploy

import "syscall"

// protectProcess makes the runner's process not dumpable: the runs it starts run as the
// same user, and could otherwise read its environment (/proc/PID/environ, which keeps the
// pool's token as it was given, GATEHOUSE_RUNNER_TOKEN) and its memory (/proc/PID/mem,
// ptrace). The commands it starts are dumpable again (execve resets it).
func protectProcess() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
