package httpapi

import (
	"context"
	"net/http"
)

// SetEpochReadHook installs f to run in every request right after its read transaction has
// read the security epoch (tests: pause a request between its snapshot and its cache use).
func SetEpochReadHook(s *Server, f func(*http.Request)) { s.epochRead = f }

// RefreshPostureGauges runs the hourly posture assessment now.
func RefreshPostureGauges(s *Server, ctx context.Context) { s.refreshPostureGauges(ctx) }
