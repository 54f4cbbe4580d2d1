//go:build !linux

package protocol

import (
	"net"
	"time"
)

func kernelRTT(net.Conn) time.Duration { return 0 }
