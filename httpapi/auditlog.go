package httpapi

import (
	"compress/gzip"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"iter"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/posture"
)

// The audit log API: Pulumi Cloud's audit log paths (v1 and v2 listings and exports) for an
// organization's admins, and the site administrator's verification of the whole log.
//
//	GET /api/orgs/{org}/auditlogs            v1: startTime (entries OLDER than it) or a
//	                                         continuationToken is required; endTime (a lower
//	                                         bound, Gatehouse's), eventFilter, userFilter
//	GET /api/orgs/{org}/auditlogs/v2         v2: startTime (lower bound, inclusive), endTime
//	                                         (upper bound, exclusive), eventFilter, userFilter,
//	                                         continuationToken, pageSize (1..1000, default 100)
//	GET /api/orgs/{org}/auditlogs/export     the same filters (v1 or v2 meaning), every match,
//	GET /api/orgs/{org}/auditlogs/v2/export  format=csv (default), cef, json (JSON Lines with
//	                                         every field, verifiable) or ocsf; always gzip
//	GET /api/admin/auditlogs/verify          audit.Verify over the whole chain
//	GET /api/admin/auditlogs                 the site-wide events (of no organization: failed
//	                                         authentications, rate limiting, site
//	                                         administration), v2 parameters; site administrators
//
// Every listing and export also filters by outcome (success, failure, denied) and
// sourceIp (the caller's address, exactly).
// Listings are newest first; exports are in log order (oldest first). Times are Unix
// seconds (RFC 3339 is accepted too). eventFilter matches the event field (the action, e.g.
// stack:create) exactly, userFilter the actor's name (a user's login or a token's name).
// Only the organization's own events are listed: events that belong to no organization
// (failed authentication before an organization was known, rate limiting, the log's own
// checkpoints) are site-wide, for site administrators only (GET /api/admin/auditlogs).

func (s *Server) registerAuditRoutes() {
	get := http.MethodGet
	s.handle(get, "/api/orgs/{org}/auditlogs", authz.OrgAuditRead, s.listAuditLogs(1))
	s.handle(get, "/api/orgs/{org}/auditlogs/v2", authz.OrgAuditRead, s.listAuditLogs(2))
	s.handle(get, "/api/orgs/{org}/auditlogs/export", authz.OrgAuditRead, s.exportAuditLogs(1))
	s.handle(get, "/api/orgs/{org}/auditlogs/v2/export", authz.OrgAuditRead, s.exportAuditLogs(2))
	s.handle(get, "/api/admin/auditlogs/verify", authz.SiteAuditVerify, s.verifyAuditLog)
	s.handle(get, "/api/admin/auditlogs", authz.SiteAuditRead, s.listAuditLogs(2))
}

// auditKeys holds each server's checkpoint verification key (SetAuditPublicKey).
var auditKeys sync.Map // *Server -> ed25519.PublicKey

// SetAuditPublicKey gives the server the public key of the audit checkpoint signer, which
// GET /api/admin/auditlogs/verify checks the stored checkpoints with.
func (s *Server) SetAuditPublicKey(pub ed25519.PublicKey) {
	auditKeys.Store(s, append(ed25519.PublicKey(nil), pub...))
}

// auditPeriods holds each server's checkpoint period (SetAuditCheckpointPeriod).
var auditPeriods sync.Map // *Server -> time.Duration

// SetAuditCheckpointPeriod tells the server how often the audit log's head is signed, which
// GET /api/admin/auditlogs/verify judges the newest checkpoint's age by (default 5 minutes).
func (s *Server) SetAuditCheckpointPeriod(d time.Duration) {
	auditPeriods.Store(s, d)
}

func (s *Server) auditCheckpointPeriod() time.Duration {
	if v, ok := auditPeriods.Load(s); ok && v.(time.Duration) > 0 {
		return v.(time.Duration)
	}
	return defaultAuditCheckpointPeriod
}

func (s *Server) auditPublicKey() ed25519.PublicKey {
	if v, ok := auditKeys.Load(s); ok {
		return v.(ed25519.PublicKey)
	}
	return nil
}

const (
	auditDefaultPage = 100
	auditMaxPage     = 1000
	auditExportPage  = 1000
)

// auditLogEvent is one entry of a listing: Pulumi Cloud's AuditLogEvent, then Gatehouse's
// fields (never a secret: events carry none).
type auditLogEvent struct {
	audit.PulumiEvent
	Seq       int64             `json:"seq"`
	ID        string            `json:"id"`
	Time      string            `json:"time"` // RFC 3339, nanoseconds
	ActorKind string            `json:"actorKind"`
	Target    string            `json:"target,omitempty"`
	Outcome   string            `json:"outcome"`
	Reason    string            `json:"reason,omitempty"`
	RequestID string            `json:"requestId,omitempty"`
	UserAgent string            `json:"userAgent,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
	Hash      string            `json:"hash"`
}

func toAuditLogEvent(e *gatehouse.AuditEvent) auditLogEvent {
	return auditLogEvent{
		PulumiEvent: audit.ToPulumi(e), Seq: e.Seq, ID: e.ID, Time: e.Time.UTC().Format(time.RFC3339Nano),
		ActorKind: e.ActorKind, Target: e.Target, Outcome: e.Outcome, Reason: e.Reason, RequestID: e.RequestID,
		UserAgent: e.UserAgent, Details: e.Details, Hash: hex.EncodeToString(e.Hash),
	}
}

type auditLogPage struct {
	AuditLogEvents    []auditLogEvent `json:"auditLogEvents"`
	ContinuationToken *string         `json:"continuationToken"`
}

// auditToken is the continuation token: where the next (older) page starts.
type auditToken struct {
	Seq int64 `json:"seq"`
}

func encodeAuditToken(seq int64) string {
	b, _ := json.Marshal(auditToken{Seq: seq})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeAuditToken(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	var t auditToken
	if err != nil || json.Unmarshal(b, &t) != nil || t.Seq <= 0 {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "invalid continuationToken")
	}
	return t.Seq, nil
}

// auditQueryText checks a filter value: text the store can compare (no NUL, valid UTF-8,
// bounded), so that a stray byte is a 400 on every engine rather than a database error.
func auditQueryText(name, v string) (string, error) {
	if len(v) > 512 || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "invalid %s", name)
	}
	return v, nil
}

// auditTime parses a time parameter: Unix seconds, or RFC 3339.
func auditTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 1<<40 {
			return time.Time{}, gatehouse.Errorf(gatehouse.EINVALID, "invalid %s %q", name, v)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, gatehouse.Errorf(gatehouse.EINVALID, "invalid %s %q: want Unix seconds or RFC 3339", name, v)
}

// auditFilter reads the query parameters of a listing or export (v1 or v2 meaning of the
// time bounds) into a filter on the request's organization.
func (rq *Request) auditFilter(version int) (gatehouse.AuditFilter, error) {
	q := rq.URL.Query()
	f := gatehouse.AuditFilter{SiteOnly: true} // a site route (no organization): site-wide events
	if rq.Org != nil {
		f = gatehouse.AuditFilter{OrgID: rq.Org.ID}
	}
	start, err := auditTime("startTime", q.Get("startTime"))
	if err != nil {
		return f, err
	}
	end, err := auditTime("endTime", q.Get("endTime"))
	if err != nil {
		return f, err
	}
	if version == 1 {
		f.Until, f.Since = start, end // v1: startTime = older than; endTime = not older than
	} else {
		f.Since, f.Until = start, end
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, gatehouse.Errorf(gatehouse.EINVALID, "the time range is empty: the lower bound is not before the upper bound")
	}
	if f.Action, err = auditQueryText("eventFilter", q.Get("eventFilter")); err != nil {
		return f, err
	}
	if f.ActorName, err = auditQueryText("userFilter", q.Get("userFilter")); err != nil {
		return f, err
	}
	switch f.Outcome = q.Get("outcome"); f.Outcome {
	case "", gatehouse.OutcomeSuccess, gatehouse.OutcomeFailure, gatehouse.OutcomeDenied:
	default:
		return f, gatehouse.Errorf(gatehouse.EINVALID, "invalid outcome %q (success, failure or denied)", truncate(f.Outcome, 64))
	}
	if f.SourceIP, err = auditQueryText("sourceIp", q.Get("sourceIp")); err != nil {
		return f, err
	}
	if tok := q.Get("continuationToken"); tok != "" {
		if f.BeforeSeq, err = decodeAuditToken(tok); err != nil {
			return f, err
		}
	}
	return f, nil
}

// listAuditLogs is GET /api/orgs/{org}/auditlogs (v1) and /auditlogs/v2: one page, newest
// first, with a continuation token when older matches remain.
func (s *Server) listAuditLogs(version int) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		q := rq.URL.Query()
		if version == 1 && q.Get("startTime") == "" && q.Get("continuationToken") == "" {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "one of startTime or continuationToken is required")
		}
		f, err := rq.auditFilter(version)
		if err != nil {
			return nil, err
		}
		size := auditDefaultPage
		if v := q.Get("pageSize"); v != "" && version == 2 {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > auditMaxPage {
				return nil, gatehouse.Errorf(gatehouse.EINVALID, "pageSize must be 1 to %d", auditMaxPage)
			}
			size = n
		}
		f.Limit = size + 1 // one more tells whether there is another page
		var evs []gatehouse.AuditEvent
		if err := rq.View(func(tx gatehouse.Tx) error {
			var err error
			evs, err = tx.ListAudit(f)
			return err
		}); err != nil {
			return nil, err
		}
		page := auditLogPage{AuditLogEvents: make([]auditLogEvent, 0, min(len(evs), size))}
		if len(evs) > size {
			evs = evs[:size]
			tok := encodeAuditToken(evs[size-1].Seq)
			page.ContinuationToken = &tok
		}
		for i := range evs {
			page.AuditLogEvents = append(page.AuditLogEvents, toAuditLogEvent(&evs[i]))
		}
		return page, nil
	}
}

// auditFormats are the export formats: content type and file extension.
var auditFormats = map[string][2]string{
	"csv":  {"text/csv; charset=utf-8", "csv"},
	"cef":  {"text/plain; charset=utf-8", "cef"},
	"json": {"application/x-ndjson", "jsonl"},
	"ocsf": {"application/x-ndjson", "ocsf.jsonl"},
}

// exportAuditLogs is GET /api/orgs/{org}/auditlogs/export and /auditlogs/v2/export: every
// matching event in log order, in the requested format, gzip-compressed, streamed page by
// page. The export itself is recorded in the log (before anything is sent: audit fails
// closed). An error after the first byte ends the stream without the gzip trailer, so the
// client sees a truncated file rather than a short one that looks complete.
func (s *Server) exportAuditLogs(version int) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		q := rq.URL.Query()
		format := q.Get("format")
		switch format {
		case "":
			format = "csv"
		case "jsonl":
			format = "json"
		}
		ft, ok := auditFormats[format]
		if !ok {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "unknown format %q (csv, cef, json or ocsf)", format)
		}
		f, err := rq.auditFilter(version)
		if err != nil {
			return nil, err
		}
		rq.Detail("export", format)
		for _, k := range []string{"startTime", "endTime", "eventFilter", "userFilter", "outcome", "sourceIp"} {
			if v := q.Get(k); v != "" {
				rq.Detail(k, truncate(v, 128))
			}
		}
		ev := rq.event
		ev.Outcome, ev.Reason = gatehouse.OutcomeSuccess, ""
		if err := s.auditQ.append(rq.Context(), &ev); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "the audit log cannot be written; the request was refused")
		}
		rq.audited = true

		h := rq.w.Header()
		h.Set("Content-Type", ft[0])
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Disposition", `attachment; filename="auditlogs-`+rq.Org.Name+"."+ft[1]+`"`)
		h.Set("Cache-Control", "no-store")
		secureHeaders(h)
		rq.w.WriteHeader(http.StatusOK)
		gz := gzip.NewWriter(rq.w)
		events := s.auditStream(rq, f)
		switch format {
		case "csv":
			err = audit.WriteCSV(gz, events)
		case "cef":
			err = audit.WriteCEF(gz, auditHost(), events)
		case "json":
			err = audit.WriteJSONL(gz, events)
		case "ocsf":
			err = audit.WriteOCSF(gz, events)
		}
		if err == nil {
			err = gz.Close()
		}
		if err != nil {
			s.log.Error("audit export failed mid-stream", "request_id", rq.ID, "org", rq.Org.Name, "err", err)
		}
		// The response is written: nothing more may reach the client.
		rq.w = discardResponse{h: http.Header{}}
		return headOnly{}, nil
	}
}

// auditStream iterates the events matching f in ascending seq, one read transaction per page.
func (s *Server) auditStream(rq *Request, f gatehouse.AuditFilter) iter.Seq2[gatehouse.AuditEvent, error] {
	f.Limit = auditExportPage // a continuation token (BeforeSeq) stays an upper bound
	return gatehouse.ScanAudit(rq.Context(), s.store, f)
}

func auditHost() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gatehouse"
}

// discardResponse swallows what the request path writes after a streamed response.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d discardResponse) WriteHeader(int)             {}

// auditVerifyJSON is the answer of GET /api/admin/auditlogs/verify: audit.Report.
type auditVerifyJSON struct {
	OK                bool   `json:"ok"`
	Summary           string `json:"summary"`
	Checked           int64  `json:"checked"`
	FirstSeq          int64  `json:"firstSeq"`
	LastSeq           int64  `json:"lastSeq"`
	Head              string `json:"head"`
	AnchorSeq         int64  `json:"anchorSeq"`
	Checkpoints       int    `json:"checkpoints"`       // matched
	StoredCheckpoints int    `json:"storedCheckpoints"` // in the database
	Unvouched         int64  `json:"unvouched"`
	Chained           int    `json:"chainedCheckpoints"` // in the checkpoint chain
	Legacy            int    `json:"legacyCheckpoints"`  // old, unchained format
	// NewestCheckpoint is the checkpoint made last, with its age and a warning when it is
	// stale (audit.Report.StaleCheckpoint, with the server's checkpoint period).
	NewestCheckpoint    *audit.Checkpoint `json:"newestCheckpoint,omitempty"`
	NewestCheckpointAge float64           `json:"newestCheckpointAgeSeconds,omitempty"`
	Warning             string            `json:"warning,omitempty"`
	KeyID               string            `json:"keyId,omitempty"`
	Seq                 int64             `json:"seq,omitempty"`
	ID                  string            `json:"id,omitempty"`
	Problem             string            `json:"problem,omitempty"`
	Detail              string            `json:"detail,omitempty"`
}

// defaultAuditCheckpointPeriod is the checkpoint period the API judges the newest
// checkpoint's age by when it was not told the server's (SetAuditCheckpointPeriod).
const defaultAuditCheckpointPeriod = 5 * time.Minute

// verifyAuditLog is GET /api/admin/auditlogs/verify (site administrators): it verifies the
// whole log, the hash chain and every stored checkpoint, and answers the report (200 with
// "ok": false when the log was tampered with).
func (s *Server) verifyAuditLog(rq *Request) (any, error) {
	ctx := rq.Context()
	// Checkpoints before events: one made while the events are read must not look like a
	// cut tail.
	var stored []gatehouse.AuditCheckpoint
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		stored, err = tx.ListAuditCheckpoints()
		return err
	}); err != nil {
		return nil, err
	}
	pub := s.auditPublicKey()
	if pub == nil && len(stored) > 0 {
		return nil, gatehouse.Errorf(gatehouse.EUNAVAILABLE, "this server has no audit signing key configured; verify with `gatehouse audit verify`")
	}
	cps := make([]audit.Checkpoint, len(stored))
	for i, c := range stored {
		cps[i] = audit.FromStored(c)
	}
	events := gatehouse.ScanAudit(ctx, s.store, gatehouse.AuditFilter{})
	r, err := audit.Verify(ctx, events, cps, pub)
	if err != nil {
		return nil, err
	}
	out := auditVerifyJSON{
		OK: r.OK, Summary: r.String(), Checked: r.Checked, FirstSeq: r.FirstSeq, LastSeq: r.LastSeq,
		Head: hex.EncodeToString(r.Head), AnchorSeq: r.AnchorSeq, Checkpoints: r.Checkpoints, StoredCheckpoints: len(stored),
		Unvouched: r.Unvouched, Chained: r.Chained, Legacy: r.Legacy, NewestCheckpoint: r.Newest,
		Seq: r.Seq, ID: r.ID, Problem: r.Problem, Detail: r.Detail,
	}
	if r.Newest != nil {
		age, warning := r.StaleCheckpoint(s.cfg.Now(), s.auditCheckpointPeriod())
		out.NewestCheckpointAge, out.Warning = age.Seconds(), warning
	}
	if pub != nil {
		out.KeyID = audit.KeyID(pub)
	}
	// The posture report checks that the chain was verified recently (best effort).
	if err := s.store.Update(ctx, func(tx gatehouse.Tx) error {
		return posture.NoteAuditVerified(tx, posture.AuditVerification{At: s.cfg.Now(), OK: r.OK, LastSeq: r.LastSeq})
	}); err != nil {
		s.log.Warn("cannot record the audit verification", "err", err)
	}
	return out, nil
}
