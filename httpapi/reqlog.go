package httpapi

import (
	"log/slog"
	"time"
)

// logRequest writes the request log's line (Config.RequestLog): method, the route's pattern
// (never the raw path with its query), status, duration, the caller as the audit log names
// it and the request ID. Nothing from headers or bodies: no token or secret can reach it.
func (s *Server) logRequest(rq *Request, d time.Duration) {
	if !s.cfg.RequestLog {
		return
	}
	s.log.LogAttrs(rq.Context(), slog.LevelInfo, "request",
		slog.String("method", rq.Method),
		slog.String("route", rq.route.Pattern),
		slog.Int("status", rq.status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("actor_kind", rq.event.ActorKind),
		slog.String("actor", rq.event.ActorName),
		slog.String("request_id", rq.ID),
	)
}
