package gatehouse

import (
	"errors"
	"fmt"
)

// Application error codes. Every error that reaches a client carries one of these; the
// HTTP layer maps them to status codes in a single table (httpapi.statusOf).
const (
	EINVALID        = "invalid"         // malformed or semantically wrong input (400)
	EUNAUTHORIZED   = "unauthorized"    // no or bad credentials (401)
	EFORBIDDEN      = "forbidden"       // authenticated but not allowed (403)
	ENOTFOUND       = "not_found"       // no such thing, or not visible to the caller (404)
	ECONFLICT       = "conflict"        // concurrent modification, already exists, locked (409)
	EGONE           = "gone"            // an update or lease that has ended (409 on the wire, see httpapi)
	ETOOLARGE       = "too_large"       // request body over the configured limit (413)
	ERATELIMITED    = "rate_limited"    // too many attempts (429)
	EUNAVAILABLE    = "unavailable"     // a dependency (database, audit sink) cannot serve now (503)
	EINTERNAL       = "internal"        // a bug or an unexpected failure (500)
	ENOTIMPLEMENTED = "not_implemented" // a known route whose feature does not exist yet (501)
)

// ErrAuditWrite marks an error of writing the audit log (errors.Is): a change whose audit
// record cannot be written fails with it, and nothing of it is stored.
var ErrAuditWrite = errors.New("the audit log cannot be written")

// Error is the application error. Message is safe to show to the caller; Err (if any) is
// the underlying cause and is only logged.
type Error struct {
	Code    string
	Message string
	Err     error
	// RetryAfter is set on ERATELIMITED errors (seconds).
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an application error with a formatted, client-safe message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an application error that keeps err as its (logged, not shown) cause.
func Wrap(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of an application error, EINTERNAL for any other non-nil error
// and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err. Errors that are not application
// errors are never shown: they become "Internal error.".
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// IsCode reports whether err is an application error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
