package audit

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// CEF header constants.
const (
	cefVendor  = "Gatehouse"
	cefProduct = "Gatehouse"
)

// CEF header field length limits (Micro Focus CEF implementation standard), in bytes; longer
// values are cut at a UTF-8 boundary. Extension values are never cut.
const (
	cefMaxVendor  = 63
	cefMaxProduct = 63
	cefMaxVersion = 31
	cefMaxClassID = 1023
	cefMaxName    = 512
)

// cefSeverity maps an outcome to a CEF severity: success 3 (low), failure 5 (medium),
// denied 7 (high).
func cefSeverity(outcome string) int {
	switch outcome {
	case gatehouse.OutcomeSuccess:
		return 3
	case gatehouse.OutcomeDenied:
		return 7
	default:
		return 5
	}
}

// WriteCEF writes events in ArcSight Common Event Format, one line per event, preceded like
// Pulumi Cloud's CEF export by a syslog-style prefix "Mmm dd hh:mm:ss host " (UTC):
//
//	Jan  2 15:04:05 host CEF:0|Gatehouse|Gatehouse|<version>|<action>|<description>|<severity>|<extension>
//
// Header: Device Event Class ID is the action, Name is Describe(e), Severity is 3 for
// success, 5 for failure, 7 for denied. Header fields escape '\' and '|'; control
// characters in them become spaces (the standard allows line breaks only in extension
// values) and they are cut to the standard's lengths.
//
// Extension (in this order; keys with an empty value are left out):
//
//	rt                         event time, milliseconds since the Unix epoch
//	dvchost                    host
//	src                        SourceIP
//	suser                      ActorName
//	act                        Action
//	outcome                    Outcome
//	reason                     Reason
//	requestClientApplication   UserAgent
//	externalId                 ID
//	cs1 (cs1Label=target)      Target
//	cs2 (cs2Label=requestId)   RequestID
//	cs3 (cs3Label=actorKind)   ActorKind
//	cs4 (cs4Label=orgName)     OrgName
//	cs5 (cs5Label=details)     Details as a JSON object
//	cs6 (cs6Label=eventHash)   Hash, hex
//	cn1 (cn1Label=seq)         Seq
//	orgID, userID              OrgID, UserID (Pulumi's custom keys; left out when 0)
//	tokenID, tokenName         TokenID; the actor name for token actors (Pulumi's keys)
//	requireOrgAdmin, requireStackAdmin, authenticationFailure
//	                           "true"/"false", as in WriteCSV (Pulumi's keys)
//
// Extension values escape '\' as "\\", '=' as "\=", line feed as "\n" and carriage return
// as "\r"; '|' is not escaped there. ParseCEF reads the lines back.
func WriteCEF(w io.Writer, host string, events iter.Seq2[gatehouse.AuditEvent, error]) error {
	bw := bufio.NewWriter(w)
	host = syslogToken(host, 255)
	var line []byte
	for e, err := range events {
		if err != nil {
			return err
		}
		line = e.Time.UTC().AppendFormat(line[:0], "Jan _2 15:04:05")
		line = append(line, ' ')
		line = append(line, host...)
		line = append(line, ' ')
		line = appendCEF(line, host, &e)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// appendCEF appends the CEF record of e (from "CEF:" on, without a syslog prefix or a
// newline) to b.
func appendCEF(b []byte, host string, e *gatehouse.AuditEvent) []byte {
	b = append(b, "CEF:0|"...)
	b = appendCEFHeader(b, cefVendor, cefMaxVendor)
	b = appendCEFHeader(b, cefProduct, cefMaxProduct)
	b = appendCEFHeader(b, gatehouse.Version, cefMaxVersion)
	action := e.Action
	if action == "" {
		action = "unknown"
	}
	b = appendCEFHeader(b, action, cefMaxClassID)
	var dbuf [256]byte
	b = appendCEFHeader(b, appendDescribe(dbuf[:0], e), cefMaxName)
	b = strconv.AppendInt(b, int64(cefSeverity(e.Outcome)), 10)
	b = append(b, '|')

	x := cefExt{b: b}
	x.addInt("rt", e.Time.UnixMilli())
	x.add("dvchost", host)
	x.add("src", e.SourceIP)
	x.add("suser", e.ActorName)
	x.add("act", e.Action)
	x.add("outcome", e.Outcome)
	x.add("reason", e.Reason)
	x.add("requestClientApplication", e.UserAgent)
	x.add("externalId", e.ID)
	x.labeled("cs1", "target", e.Target)
	x.labeled("cs2", "requestId", e.RequestID)
	x.labeled("cs3", "actorKind", e.ActorKind)
	x.labeled("cs4", "orgName", e.OrgName)
	if len(e.Details) > 0 {
		if d, err := json.Marshal(e.Details); err == nil {
			x.labeled("cs5", "details", string(d))
		}
	}
	if len(e.Hash) > 0 && len(e.Hash) <= 64 {
		var hbuf [128]byte
		n := hex.Encode(hbuf[:], e.Hash)
		x.add("cs6Label", "eventHash")
		x.addBytes("cs6", hbuf[:n])
	}
	x.add("cn1Label", "seq")
	x.addInt("cn1", e.Seq)
	if e.OrgID != 0 {
		x.addInt("orgID", e.OrgID)
	}
	if e.UserID != 0 {
		x.addInt("userID", e.UserID)
	}
	x.add("tokenID", e.TokenID)
	if isTokenActor(e) {
		x.add("tokenName", e.ActorName)
	}
	x.add("requireOrgAdmin", strconv.FormatBool(requireOrgAdmin(e)))
	x.add("requireStackAdmin", strconv.FormatBool(requireStackAdmin(e)))
	x.add("authenticationFailure", strconv.FormatBool(authFailure(e)))
	return x.b
}

// appendCEFHeader appends a header field (escaped, one line, cut to max bytes) and '|'.
func appendCEFHeader[T string | []byte](b []byte, s T, max int) []byte {
	if len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '|':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return append(b, '|')
}

// cefExt appends extension key=value pairs.
type cefExt struct {
	b []byte
	n int
}

func (x *cefExt) add(key, value string) {
	if value != "" {
		x.b = appendCEFPair(x.b, x.n > 0, key, value)
		x.n++
	}
}

func (x *cefExt) addBytes(key string, value []byte) {
	if len(value) > 0 {
		x.b = appendCEFPair(x.b, x.n > 0, key, value)
		x.n++
	}
}

func (x *cefExt) addInt(key string, v int64) {
	var buf [20]byte
	x.addBytes(key, strconv.AppendInt(buf[:0], v, 10))
}

// appendCEFPair appends " key=value" (no space first), escaping the value.
func appendCEFPair[T string | []byte](b []byte, space bool, key string, value T) []byte {
	if space {
		b = append(b, ' ')
	}
	b = append(b, key...)
	b = append(b, '=')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '=':
			b = append(b, '\\', '=')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}

func (x *cefExt) labeled(key, label, value string) {
	if value == "" {
		return
	}
	x.add(key+"Label", label)
	x.add(key, value)
}

// ParseCEF parses one CEF record, optionally preceded by a syslog prefix (anything before
// the first "CEF:" that ends in a space). It returns the seven header fields (version,
// vendor, product, device version, event class ID, name, severity), unescaped, and the
// extension as a map.
//
// It is strict: a header needs all seven fields; header fields may only escape '\' and '|';
// extension keys must be ASCII letters, digits or '_', may not repeat, and values may only
// escape '\', '=', 'n' and 'r'; an unescaped '=' or a raw line break in a value, a trailing
// lone backslash, a non-numeric version and a severity outside 0..10 (or Unknown, Low,
// Medium, High, Very-High) are errors.
func ParseCEF(line string) (header []string, ext map[string]string, err error) {
	i := strings.Index(line, "CEF:")
	if i < 0 {
		return nil, nil, errors.New("cef: no \"CEF:\" marker")
	}
	if i > 0 && line[i-1] != ' ' {
		return nil, nil, errors.New("cef: the syslog prefix must end with a space before \"CEF:\"")
	}
	s := line[i+len("CEF:"):]
	header = make([]string, 0, 7)
	var field []byte
	pos := 0
	for len(header) < 7 {
		if pos >= len(s) {
			return nil, nil, fmt.Errorf("cef: header has %d fields, want 7", len(header))
		}
		c := s[pos]
		switch c {
		case '\\':
			if pos+1 >= len(s) {
				return nil, nil, errors.New("cef: header ends with a lone backslash")
			}
			n := s[pos+1]
			if n != '\\' && n != '|' {
				return nil, nil, fmt.Errorf("cef: header field %d: invalid escape \\%c", len(header)+1, n)
			}
			field = append(field, n)
			pos += 2
		case '|':
			header = append(header, string(field))
			field = field[:0]
			pos++
		case '\n', '\r':
			return nil, nil, errors.New("cef: line break in header")
		default:
			field = append(field, c)
			pos++
		}
	}
	if header[0] == "" || strings.Trim(header[0], "0123456789") != "" {
		return nil, nil, fmt.Errorf("cef: version %q is not a number", header[0])
	}
	if !validCEFSeverity(header[6]) {
		return nil, nil, fmt.Errorf("cef: severity %q is not 0..10 or Unknown, Low, Medium, High, Very-High", header[6])
	}
	ext, err = parseCEFExtension(s[pos:])
	if err != nil {
		return nil, nil, err
	}
	return header, ext, nil
}

func validCEFSeverity(s string) bool {
	switch s {
	case "Unknown", "Low", "Medium", "High", "Very-High":
		return true
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 10 && s == strconv.Itoa(n)
}

// parseCEFExtension parses "k1=v1 k2=v2 ...". A value runs to the last space before the
// next unescaped '=' (whose key is the word between that space and the '=') or to the end.
func parseCEFExtension(s string) (map[string]string, error) {
	ext := make(map[string]string)
	if s == "" {
		return ext, nil
	}
	// The first key runs from the start to the first '='.
	eq := strings.IndexByte(s, '=')
	if eq < 0 {
		return nil, errors.New("cef: extension without '='")
	}
	key := s[:eq]
	pos := eq + 1
	for {
		if err := checkCEFKey(key); err != nil {
			return nil, err
		}
		if _, dup := ext[key]; dup {
			return nil, fmt.Errorf("cef: extension key %q repeated", key)
		}
		next := nextUnescapedEq(s, pos)
		var raw string
		if next < 0 {
			raw = s[pos:]
		} else {
			sp := strings.LastIndexByte(s[pos:next], ' ')
			if sp < 0 {
				return nil, fmt.Errorf("cef: value of %q contains an unescaped '='", key)
			}
			raw = s[pos : pos+sp]
		}
		v, err := unescapeCEFValue(raw)
		if err != nil {
			return nil, fmt.Errorf("cef: value of %q: %w", key, err)
		}
		ext[key] = v
		if next < 0 {
			return ext, nil
		}
		key = s[pos+len(raw)+1 : next]
		pos = next + 1
	}
}

// nextUnescapedEq returns the index of the next '=' at or after pos that is not escaped,
// or -1.
func nextUnescapedEq(s string, pos int) int {
	for i := pos; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip the escaped byte (validated by unescapeCEFValue)
		case '=':
			return i
		}
	}
	return -1
}

func checkCEFKey(k string) error {
	if k == "" {
		return errors.New("cef: empty extension key")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("cef: invalid extension key %q (a value with an unescaped '='?)", k)
		}
	}
	return nil
}

func unescapeCEFValue(raw string) (string, error) {
	if strings.IndexAny(raw, "\\\n\r") < 0 {
		return raw, nil
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '\n', '\r':
			return "", errors.New("raw line break")
		case '\\':
			if i+1 >= len(raw) {
				return "", errors.New("lone backslash at the end")
			}
			i++
			switch raw[i] {
			case '\\':
				out = append(out, '\\')
			case '=':
				out = append(out, '=')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			default:
				return "", fmt.Errorf("invalid escape \\%c", raw[i])
			}
		default:
			out = append(out, c)
		}
	}
	return string(out), nil
}
