package httpapi

import "net/http"

// SetEpochReadHook installs f to run in every request right after its read transaction has
// read the security epoch (tests: pause a request between its snapshot and its cache use).
func SetEpochReadHook(s *Server, f func(*http.Request)) { s.epochRead = f }
