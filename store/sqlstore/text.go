package sqlstore

import (
	"strings"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// validText returns s as text every engine stores and reads back unchanged: each byte that
// is not part of a valid UTF-8 sequence becomes U+FFFD, byte by byte (as encoding/json and
// audit.Hash count it), and so does NUL (PostgreSQL's text cannot hold it; SQLite's can).
// Strings that arrive from outside unchecked (a User-Agent, an error message) go through
// it, so that a stray byte cannot make a write fail on one engine only: an audit record
// that cannot be written fails its request closed.
func validText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == 0:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// validAuditText makes e's text fields valid (see validText) before it is hashed and stored,
// so that the stored event, the caller's copy and the hash all agree. Details need nothing:
// they are stored as JSON, which escapes NUL and reads invalid bytes as U+FFFD, the way
// audit.Hash reads them.
func validAuditText(e *gatehouse.AuditEvent) {
	for _, p := range []*string{&e.ID, &e.OrgName, &e.ActorKind, &e.ActorName, &e.TokenID, &e.SourceIP, &e.UserAgent,
		&e.Action, &e.Target, &e.Outcome, &e.Reason, &e.RequestID} {
		*p = validText(*p)
	}
}
