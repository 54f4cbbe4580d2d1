package deploy

import "os/exec"

// SetCommandHook makes f see every command a runner starts (until restore is called).
func SetCommandHook(f func(*exec.Cmd)) (restore func()) {
	commandHook = f
	return func() { commandHook = nil }
}
