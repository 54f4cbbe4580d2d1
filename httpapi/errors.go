package httpapi

import (
	"errors"
	"net/http"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/esc"
)

// statuses maps application error codes to HTTP status codes: the one table.
var statuses = map[string]int{
	gatehouse.EINVALID:        http.StatusBadRequest,
	gatehouse.EUNAUTHORIZED:   http.StatusUnauthorized,
	gatehouse.EFORBIDDEN:      http.StatusForbidden,
	gatehouse.ENOTFOUND:       http.StatusNotFound,
	gatehouse.ECONFLICT:       http.StatusConflict,
	gatehouse.EGONE:           http.StatusForbidden, // the CLI reads 403 on lease calls as "lease expired"
	gatehouse.ETOOLARGE:       http.StatusRequestEntityTooLarge,
	gatehouse.ERATELIMITED:    http.StatusTooManyRequests,
	gatehouse.EUNAVAILABLE:    http.StatusServiceUnavailable,
	gatehouse.EINTERNAL:       http.StatusInternalServerError,
	gatehouse.ENOTIMPLEMENTED: http.StatusNotImplemented,
}

// statusOf returns the HTTP status for err.
func statusOf(err error) int {
	if s, ok := statuses[gatehouse.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the CLI's apitype.ErrorResponse: code must equal the HTTP status, or the
// CLI's "is this a 404?" checks fail.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Diagnostics are an environment's evaluation errors (the ESC CLI prints them).
	Diagnostics esc.Diagnostics `json:"diagnostics,omitempty"`
}

// diagnosticsOf returns the evaluation diagnostics an error carries (nil for others).
func diagnosticsOf(err error) esc.Diagnostics {
	var ee *esc.Error
	if errors.As(err, &ee) {
		return ee.Diagnostics
	}
	return nil
}
