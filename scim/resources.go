package scim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Meta is a resource's meta attribute.
type Meta struct {
	ResourceType string `json:"resourceType"`
	Created      string `json:"created,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Location     string `json:"location,omitempty"`
}

// Name is a User's name.
type Name struct {
	GivenName  string `json:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty"`
	Formatted  string `json:"formatted,omitempty"`
}

// Email is one of a User's emails (Gatehouse keeps one, the work email).
type Email struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary"`
}

// User is the SCIM User resource.
type User struct {
	Schemas     []string `json:"schemas"`
	ID          string   `json:"id"`
	ExternalID  string   `json:"externalId,omitempty"`
	UserName    string   `json:"userName"`
	Name        *Name    `json:"name,omitempty"`
	DisplayName string   `json:"displayName,omitempty"`
	Emails      []Email  `json:"emails,omitempty"`
	Active      bool     `json:"active"`
	Meta        Meta     `json:"meta"`
}

// Member is a Group's member.
type Member struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Ref     string `json:"$ref,omitempty"`
}

// Group is the SCIM Group resource (a team).
type Group struct {
	Schemas     []string  `json:"schemas"`
	ID          string    `json:"id"`
	DisplayName string    `json:"displayName"`
	Members     *[]Member `json:"members,omitempty"`
	Meta        Meta      `json:"meta"`
}

// ListResponse is a query's answer.
type ListResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// flexBool is a boolean that also accepts the strings "true" and "false" in any case
// (Entra ID's non-gallery provisioning sends "True" and "False").
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	s := string(bytes.TrimSpace(data))
	if uq, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		s = uq
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return invalid(InvalidValue, "Expected a boolean, got %s.", quoteFilter(string(data)))
	}
	return nil
}

// emailIn is an email as IdPs send it.
type emailIn struct {
	Value   string   `json:"value"`
	Type    string   `json:"type"`
	Primary flexBool `json:"primary"`
}

// userIn is a User as POST and PUT send it. Unknown keys (Okta's password, groups,
// locale; Entra's enterprise extension object) are ignored: Okta fails a push otherwise.
type userIn struct {
	UserName    *string `json:"userName"`
	ExternalID  *string `json:"externalId"`
	DisplayName *string `json:"displayName"`
	Name        *struct {
		GivenName  *string `json:"givenName"`
		FamilyName *string `json:"familyName"`
	} `json:"name"`
	Emails []emailIn `json:"emails"`
	Active *flexBool `json:"active"`
}

// workEmail picks the work email, else the primary one, else the first.
func workEmail(es []emailIn) string {
	for _, e := range es {
		if strings.EqualFold(e.Type, "work") {
			return strings.TrimSpace(e.Value)
		}
	}
	for _, e := range es {
		if e.Primary {
			return strings.TrimSpace(e.Value)
		}
	}
	if len(es) > 0 {
		return strings.TrimSpace(es[0].Value)
	}
	return ""
}

// memberIn is a group member as IdPs send it.
type memberIn struct {
	Value   string `json:"value"`
	Display string `json:"display"`
}

// groupIn is a Group as POST and PUT send it (externalId and other keys are ignored).
type groupIn struct {
	DisplayName *string     `json:"displayName"`
	Members     *[]memberIn `json:"members"`
}

// decodeJSON decodes a request body, answering malformed JSON with 400 invalidSyntax.
func decodeJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return invalid(InvalidSyntax, "The request body is empty.")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		if TypeOf(err) != "" {
			return err
		}
		return invalid(InvalidSyntax, "The request body is not valid JSON for this resource: %s.", jsonErr(err))
	}
	if dec.More() {
		return invalid(InvalidSyntax, "The request body has data after the JSON value.")
	}
	return nil
}

// jsonErr is a decoding error's message without any of the caller's values.
func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if e, ok := err.(*json.UnmarshalTypeError); ok {
		te = e
		return "attribute " + te.Field + " has the wrong type"
	}
	var se *json.SyntaxError
	if e, ok := err.(*json.SyntaxError); ok {
		se = e
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return "malformed"
}
