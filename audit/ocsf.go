package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// OCSFVersion is the OCSF schema version WriteOCSF declares in metadata.version.
const OCSFVersion = "1.6.0"

// OCSF API Activity (class 6003, category 6 Application Activity).
const (
	ocsfClassUID    = 6003
	ocsfCategoryUID = 6
)

// ocsfEvent is an OCSF API Activity event (only the attributes we fill).
type ocsfEvent struct {
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	TypeUID      int    `json:"type_uid"`
	TypeName     string `json:"type_name"`
	Time         int64  `json:"time"`
	SeverityID   int    `json:"severity_id"`
	Severity     string `json:"severity"`
	StatusID     int    `json:"status_id"`
	Status       string `json:"status"`
	StatusDetail string `json:"status_detail,omitempty"`
	Message      string `json:"message"`

	Metadata    ocsfMetadata     `json:"metadata"`
	Actor       ocsfActor        `json:"actor"`
	API         ocsfAPI          `json:"api"`
	SrcEndpoint ocsfEndpoint     `json:"src_endpoint"`
	HTTPRequest *ocsfHTTPRequest `json:"http_request,omitempty"`
	Resources   []ocsfResource   `json:"resources,omitempty"`
	Unmapped    ocsfUnmapped     `json:"unmapped"`
}

type ocsfMetadata struct {
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	UID            string      `json:"uid,omitempty"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	Sequence       int64       `json:"sequence"`
	TenantUID      string      `json:"tenant_uid,omitempty"`
	LogName        string      `json:"log_name"`
	OriginalTime   string      `json:"original_time"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version"`
}

type ocsfActor struct {
	User    ocsfUser     `json:"user"`
	Session *ocsfSession `json:"session,omitempty"`
}

type ocsfUser struct {
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

type ocsfSession struct {
	CredentialUID string `json:"credential_uid,omitempty"`
}

type ocsfAPI struct {
	Operation string        `json:"operation"`
	Service   ocsfService   `json:"service"`
	Request   *ocsfRequest  `json:"request,omitempty"`
	Response  *ocsfResponse `json:"response,omitempty"`
}

type ocsfService struct {
	Name string `json:"name"`
}

type ocsfRequest struct {
	UID string `json:"uid"`
}

type ocsfResponse struct {
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

type ocsfEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Name string `json:"name,omitempty"`
}

type ocsfHTTPRequest struct {
	UserAgent string `json:"user_agent"`
}

type ocsfResource struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

type ocsfUnmapped struct {
	Seq       int64             `json:"seq"`
	OrgID     int64             `json:"org_id,omitempty"`
	OrgName   string            `json:"org_name,omitempty"`
	ActorKind string            `json:"actor_kind,omitempty"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details,omitempty"`
	PrevHash  string            `json:"prev_hash,omitempty"`
	Hash      string            `json:"hash,omitempty"`
}

// ocsfActivity derives the API Activity activity from the verb of the action ("stack:create"
// -> Create): 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other.
func ocsfActivity(action string) (int, string) {
	verb := action
	if i := strings.LastIndexAny(verb, ":."); i >= 0 {
		verb = verb[i+1:]
	}
	verb = strings.ToLower(verb)
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(verb, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("create", "add", "register", "import", "init", "new", "issue", "invite", "grant"):
		return 1, "Create"
	case has("read", "get", "list", "export", "decrypt", "open", "view", "show", "download"):
		return 2, "Read"
	case has("update", "edit", "set", "change", "rename", "transfer", "rotate", "enable", "disable", "patch", "put", "cancel", "finish", "start", "renew"):
		return 3, "Update"
	case has("delete", "remove", "revoke", "destroy", "purge", "prune"):
		return 4, "Delete"
	}
	return 99, "Other"
}

// toOCSF maps an event to OCSF API Activity (6003); WriteOCSF documents the mapping.
func toOCSF(e *gatehouse.AuditEvent) ocsfEvent {
	actID, actName := ocsfActivity(e.Action)
	o := ocsfEvent{
		ClassUID: ocsfClassUID, ClassName: "API Activity",
		CategoryUID: ocsfCategoryUID, CategoryName: "Application Activity",
		ActivityID: actID, ActivityName: actName,
		TypeUID: ocsfClassUID*100 + actID, TypeName: "API Activity: " + actName,
		Time:         e.Time.UnixMilli(),
		StatusDetail: e.Reason,
		Message:      Describe(e),
		Metadata: ocsfMetadata{
			Version:        OCSFVersion,
			Product:        ocsfProduct{Name: "Gatehouse", VendorName: "Gatehouse", Version: gatehouse.Version},
			UID:            e.ID,
			CorrelationUID: e.RequestID,
			Sequence:       e.Seq,
			LogName:        "audit",
			OriginalTime:   e.Time.UTC().Format(time.RFC3339Nano),
		},
		API: ocsfAPI{Operation: e.Action, Service: ocsfService{Name: "gatehouse"}},
		Unmapped: ocsfUnmapped{
			Seq: e.Seq, OrgID: e.OrgID, OrgName: e.OrgName, ActorKind: e.ActorKind,
			Outcome: e.Outcome, Details: e.Details,
			PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
		},
	}
	switch e.Outcome {
	case gatehouse.OutcomeSuccess:
		o.SeverityID, o.Severity, o.StatusID, o.Status = 1, "Informational", 1, "Success"
	case gatehouse.OutcomeDenied:
		o.SeverityID, o.Severity, o.StatusID, o.Status = 3, "Medium", 2, "Failure"
	case gatehouse.OutcomeFailure:
		o.SeverityID, o.Severity, o.StatusID, o.Status = 2, "Low", 2, "Failure"
	default:
		o.SeverityID, o.Severity, o.StatusID, o.Status = 2, "Low", 0, "Unknown"
	}
	if e.OrgID != 0 {
		o.Metadata.TenantUID = strconv.FormatInt(e.OrgID, 10)
	}
	o.Actor.User = ocsfUser{Name: e.ActorName, TypeID: 99, Type: e.ActorKind}
	switch e.ActorKind {
	case "user":
		o.Actor.User.TypeID, o.Actor.User.Type = 1, "User"
	case "system":
		o.Actor.User.TypeID, o.Actor.User.Type = 3, "System"
	}
	if o.Actor.User.Type == "" {
		o.Actor.User.Type = "Other"
	}
	if e.UserID != 0 {
		o.Actor.User.UID = strconv.FormatInt(e.UserID, 10)
	}
	if e.TokenID != "" {
		o.Actor.Session = &ocsfSession{CredentialUID: e.TokenID}
	}
	if e.RequestID != "" {
		o.API.Request = &ocsfRequest{UID: e.RequestID}
	}
	if e.Outcome != gatehouse.OutcomeSuccess {
		o.API.Response = &ocsfResponse{Error: e.Outcome, Message: e.Reason}
	}
	if e.SourceIP != "" {
		o.SrcEndpoint.IP = e.SourceIP
	} else {
		o.SrcEndpoint.Name = "unknown"
	}
	if e.UserAgent != "" {
		o.HTTPRequest = &ocsfHTTPRequest{UserAgent: e.UserAgent}
	}
	if e.Target != "" {
		typ := ""
		if i := strings.IndexByte(e.Action, ':'); i > 0 {
			typ = e.Action[:i]
		}
		o.Resources = []ocsfResource{{Name: e.Target, Type: typ}}
	}
	return o
}

// appendOCSF appends the OCSF JSON line of e to b.
func appendOCSF(b []byte, e *gatehouse.AuditEvent) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(toOCSF(e)); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}

// WriteOCSF writes events as JSON lines of OCSF (schema OCSFVersion) API Activity events,
// class 6003. The mapping:
//
//	class_uid/category_uid   6003 / 6 (Application Activity)
//	activity_id              from the action's verb: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other
//	type_uid                 600300 + activity_id
//	time                     Time in milliseconds since the epoch (metadata.original_time: RFC 3339, ns)
//	severity_id              1 Informational (success), 2 Low (failure), 3 Medium (denied)
//	status_id / status       1 Success; 2 Failure (denied, failure); 0 Unknown
//	status_detail            Reason
//	message                  Describe(e)
//	metadata                 uid ID, correlation_uid RequestID, sequence Seq, tenant_uid OrgID,
//	                         log_name "audit", product {Gatehouse, version}
//	actor.user               name ActorName, uid UserID, type_id 1 User / 3 System / 99 Other
//	actor.session            credential_uid TokenID (the token's ID, never its value)
//	api                      operation Action, service.name "gatehouse", request.uid RequestID,
//	                         response {error Outcome, message Reason} unless successful
//	src_endpoint             ip SourceIP (name "unknown" when empty: the attribute is required)
//	http_request.user_agent  UserAgent
//	resources[0]             name Target, type the action's prefix ("stack" of "stack:create")
//	unmapped                 seq, org_id, org_name, actor_kind, outcome, details, prev_hash, hash
func WriteOCSF(w io.Writer, events iter.Seq2[gatehouse.AuditEvent, error]) error {
	bw := bufio.NewWriter(w)
	var line []byte
	for e, err := range events {
		if err != nil {
			return err
		}
		line, err = appendOCSF(line[:0], &e)
		if err != nil {
			return err
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}
