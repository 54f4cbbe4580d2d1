package httpapi

import (
	"database/sql"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	authFailures  *prometheus.CounterVec
	auditFailures prometheus.Counter
	leaseExpired  prometheus.Counter
	rateLimited   *prometheus.CounterVec
	// protocolChoices counts the state protocol chosen per real run, by protocol and reason.
	protocolChoices *prometheus.CounterVec
}

// authFailureReasons are the reasons of gatehouse_auth_failures_total (all exported at 0
// from the start, so that an alert on a rate sees the series).
var authFailureReasons = []string{"missing", "malformed", "unknown", "expired", "revoked", "disabled", "scheme"}

// rateLimitReasons are the reasons of gatehouse_rate_limited_requests_total: the
// failed-authentication limit of the source address, or of the credential's token prefix.
var rateLimitReasons = []string{"address", "token_prefix"}

func newMetrics(reg prometheus.Registerer, store gatehouse.Store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total",
			Help: "HTTP API requests by route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "HTTP API request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_auth_failures_total",
			Help: "Failed authentications of access tokens by reason: missing, malformed, unknown, expired, revoked, disabled, scheme.",
		}, []string{"reason"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_write_failures_total",
			Help: "Requests refused because their audit record could not be written.",
		}),
		leaseExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_update_lease_expired_total",
			Help: "Calls with an update lease that had expired (a CLI that died or lost its connection mid-update).",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_rate_limited_requests_total",
			Help: "Requests answered 429 by the failed-authentication limit, by reason: address (the source address is blocked) or token_prefix (the credential's token prefix is blocked).",
		}, []string{"reason"}),
	}
	m.protocolChoices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_update_protocol_total",
		Help: "State protocol chosen per update (checkpoint or journal) by reason: forced_on, forced_off, client_unsupported, destroy, new_stack, faster_checkpoints, faster_journal.",
	}, []string{"protocol", "reason"})
	for _, r := range authFailureReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range rateLimitReasons {
		m.rateLimited.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.authFailures, m.auditFailures, m.leaseExpired, m.rateLimited, m.protocolChoices, buildInfoCollector())
		if p, ok := store.(interface{ Writer() *sql.DB }); ok {
			reg.MustRegister(collectors.NewDBStatsCollector(p.Writer(), store.Engine()))
		}
	}
	return m
}

// buildInfoCollector is gatehouse_build_info{version,revision,goversion} 1.
func buildInfoCollector() prometheus.Collector {
	version, revision, goVersion := gatehouse.Version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "gatehouse_build_info",
		Help:        "The running binary's version, VCS revision and Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	})
	g.Set(1)
	return g
}

func (m *metrics) observe(rt *Route, status int, d time.Duration) {
	m.requests.WithLabelValues(rt.Method, rt.Pattern, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(rt.Method, rt.Pattern).Observe(d.Seconds())
}

func (m *metrics) authFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

func (m *metrics) rateLimit(reason string) { m.rateLimited.WithLabelValues(reason).Inc() }
