//go:build !unix

package app

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock is not implemented here: offline commands are not protected against a running
// server on this platform.
func flock(*os.File, bool) error { return nil }
