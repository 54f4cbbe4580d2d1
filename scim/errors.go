// Package scim is Gatehouse's SCIM 2.0 service provider (RFC 7643, RFC 7644) with Pulumi
// Cloud's behaviour: people and groups (teams) of one organization, provisioned by its
// identity provider (Okta, Microsoft Entra ID). The HTTP routes are in package httpapi;
// this package parses requests, applies them to the store in the caller's transaction and
// shapes the answers.
package scim

import (
	"errors"
	"fmt"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Schema URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaList       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaError      = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPConfig   = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResType    = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema     = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Type is an RFC 7644 section 3.12 scimType. As an error it is the cause carried by a
// gatehouse.Error, so that the HTTP layer's one status table still applies.
type Type string

// scimTypes used here.
const (
	InvalidFilter Type = "invalidFilter"
	InvalidPath   Type = "invalidPath"
	InvalidValue  Type = "invalidValue"
	InvalidSyntax Type = "invalidSyntax"
	Mutability    Type = "mutability"
	Uniqueness    Type = "uniqueness"
	NoTarget      Type = "noTarget"
)

func (t Type) Error() string { return "scimType " + string(t) }

// errorf returns an application error with code and a SCIM type (empty: none).
func errorf(code string, t Type, format string, args ...any) error {
	e := &gatehouse.Error{Code: code, Message: fmt.Sprintf(format, args...)}
	if t != "" {
		e.Err = t
	}
	return e
}

func invalid(t Type, format string, args ...any) error {
	return errorf(gatehouse.EINVALID, t, format, args...)
}

// TypeOf returns the scimType an error carries ("" when none).
func TypeOf(err error) Type {
	var t Type
	if errors.As(err, &t) {
		return t
	}
	return ""
}

// ErrorBody is the SCIM error envelope; Status is a string, as RFC 7644 has it.
type ErrorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail"`
}

// NewErrorBody returns the envelope of an error answered with status.
func NewErrorBody(status int, err error) ErrorBody {
	return ErrorBody{Schemas: []string{SchemaError}, Status: fmt.Sprint(status), ScimType: string(TypeOf(err)), Detail: gatehouse.ErrorMessage(err)}
}
