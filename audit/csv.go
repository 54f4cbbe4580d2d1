package audit

import (
	"bufio"
	"encoding/csv"
	"io"
	"iter"
	"strconv"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// CSVHeader is the header row WriteCSV writes: Pulumi Cloud's export columns, then ours.
var CSVHeader = []string{
	"Timestamp", "Name", "Login", "Event", "Description", "SourceIP",
	"RequireOrgAdmin", "RequireStackAdmin", "AuthenticationFailure",
	"Outcome", "Target", "Seq", "ID",
}

// WriteCSV writes events as CSV (RFC 4180, via encoding/csv) with the header CSVHeader.
// The first nine columns are Pulumi Cloud's: Timestamp is Unix seconds; Name is the actor
// name; Login the actor name when the actor is a user (empty for tokens and the system);
// Event the action; Description is Describe(e); the three flags are "true" or "false"
// (RequireOrgAdmin and RequireStackAdmin from Details, AuthenticationFailure for denied
// attempts and failed "auth" actions). Outcome, Target, Seq and ID follow.
//
// To keep exports safe to open in a spreadsheet, a cell that starts with '=', '+', '-',
// '@', tab or carriage return gets a leading apostrophe (OWASP's CSV injection advice), so
// such values are not read back byte for byte.
func WriteCSV(w io.Writer, events iter.Seq2[gatehouse.AuditEvent, error]) error {
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	rec := make([]string, len(CSVHeader))
	for e, err := range events {
		if err != nil {
			return err
		}
		rec[0] = strconv.FormatInt(e.Time.Unix(), 10)
		rec[1] = e.ActorName
		rec[2] = login(&e)
		rec[3] = e.Action
		rec[4] = Describe(&e)
		rec[5] = e.SourceIP
		rec[6] = strconv.FormatBool(requireOrgAdmin(&e))
		rec[7] = strconv.FormatBool(requireStackAdmin(&e))
		rec[8] = strconv.FormatBool(authFailure(&e))
		rec[9] = e.Outcome
		rec[10] = e.Target
		rec[11] = strconv.FormatInt(e.Seq, 10)
		rec[12] = e.ID
		for i := range rec {
			rec[i] = csvSafe(rec[i])
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// csvSafe defuses spreadsheet formulas (CSV injection).
func csvSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
