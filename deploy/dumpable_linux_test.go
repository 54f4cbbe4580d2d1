//go:build linux

package deploy_test

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestRunnerProcessHidden: a run's commands run as the runner's user, but cannot read the
// runner's environment (/proc/PID/environ holds the pool's token as it was given) or
// memory.
func TestRunnerProcessHidden(t *testing.T) {
	f := newFixture(t)
	if dumpable, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0); errno != 0 || dumpable != 0 {
		t.Errorf("the runner's process is dumpable (%d, %v): its user's processes read its /proc/PID/environ and memory", dumpable, errno)
	}
	if os.Geteuid() == 0 {
		skipLoudly(t, "root reads every process's /proc/PID/environ; the read itself is checked only when the tests run as another user")
	}
	f.settings(t, repo(t), []string{`if cat /proc/$PPID/environ >/dev/null 2>&1 || head -c1 /proc/$PPID/mem >/dev/null 2>&1; then echo "RUNNER-PROCESS-"READABLE; else echo runner-process" hidden"; fi`}, nil)
	id := f.trigger(t, "update")
	if ran, err := f.runner.RunOne(context.Background()); !ran || err != nil {
		t.Fatalf("RunOne = %v, %v", ran, err)
	}
	_, logs := f.deployment(t, id)
	if !strings.Contains(logs, "runner-process hidden") || strings.Contains(logs, "RUNNER-PROCESS-READABLE") {
		t.Fatalf("a pre-run command read the runner's /proc/PID/environ:\n%s", logs)
	}
}
