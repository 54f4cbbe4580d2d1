//go:build !linux

package deploy

import (
	"os/exec"
	"time"
)

func isolationSupported() error { return errIsolation }

func setCredential(cmd *exec.Cmd, uid uint32) {}

func processUIDs() (map[uint32]bool, error) { return nil, errIsolation }

func (p *uidPool) killUID(uid uint32, timeout time.Duration) error { return errIsolation }

func sweepTemp(uid uint32) {}
