package scim

import "strings"

// ServiceProviderConfig is GET /ServiceProviderConfig.
func ServiceProviderConfig(base string) map[string]any {
	no := map[string]any{"supported": false}
	return map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://github.com/gatehouse-dev/gatehouse#scim-provisioning",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": MaxCount},
		"changePassword":   no,
		"sort":             no,
		"etag":             no,
		"authenticationSchemes": []map[string]any{{
			"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
			"description": "The organization's SCIM token (gatehouse_scim_...), sent as Authorization: Bearer <token>.",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": base + "/ServiceProviderConfig"},
	}
}

// ResourceTypes lists the resource types (GET /ResourceTypes).
func ResourceTypes(base string) []any {
	return []any{resourceType(base, "User", "/Users", SchemaUser), resourceType(base, "Group", "/Groups", SchemaGroup)}
}

// ResourceType returns one resource type by name (nil when unknown).
func ResourceType(base, name string) map[string]any {
	for _, rt := range ResourceTypes(base) {
		m := rt.(map[string]any)
		if strings.EqualFold(m["id"].(string), name) {
			return m
		}
	}
	return nil
}

func resourceType(base, name, endpoint, schema string) map[string]any {
	return map[string]any{
		"schemas": []string{SchemaResType}, "id": name, "name": name, "endpoint": endpoint,
		"description": name, "schema": schema, "schemaExtensions": []any{},
		"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/" + name},
	}
}

func attr(name, typ string, multi, required bool, mutability, uniqueness string, sub ...map[string]any) map[string]any {
	a := map[string]any{
		"name": name, "type": typ, "multiValued": multi, "required": required, "caseExact": false,
		"mutability": mutability, "returned": "default", "uniqueness": uniqueness, "description": name,
	}
	if len(sub) > 0 {
		a["subAttributes"] = sub
	}
	return a
}

// Schemas lists the schemas (GET /Schemas): exactly the attributes Gatehouse accepts.
func Schemas(base string) []any {
	user := map[string]any{
		"schemas": []string{SchemaSchema}, "id": SchemaUser, "name": "User", "description": "A person of the organization",
		"attributes": []any{
			attr("userName", "string", false, true, "immutable", "server"),
			attr("externalId", "string", false, false, "readWrite", "none"),
			attr("displayName", "string", false, false, "readWrite", "none"),
			attr("name", "complex", false, false, "readWrite", "none",
				attr("givenName", "string", false, false, "readWrite", "none"),
				attr("familyName", "string", false, false, "readWrite", "none")),
			attr("emails", "complex", true, false, "readWrite", "server",
				attr("value", "string", false, false, "readWrite", "server"),
				attr("type", "string", false, false, "readWrite", "none"),
				attr("primary", "boolean", false, false, "readWrite", "none")),
			attr("active", "boolean", false, false, "readWrite", "none"),
		},
		"meta": map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + SchemaUser},
	}
	group := map[string]any{
		"schemas": []string{SchemaSchema}, "id": SchemaGroup, "name": "Group", "description": "A team of the organization",
		"attributes": []any{
			attr("displayName", "string", false, true, "readWrite", "server"),
			attr("members", "complex", true, false, "readWrite", "none",
				attr("value", "string", false, false, "immutable", "none"),
				attr("display", "string", false, false, "readOnly", "none"),
				attr("$ref", "reference", false, false, "immutable", "none")),
		},
		"meta": map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + SchemaGroup},
	}
	return []any{user, group}
}

// Schema returns one schema by URN (nil when unknown).
func Schema(base, id string) map[string]any {
	for _, s := range Schemas(base) {
		m := s.(map[string]any)
		if strings.EqualFold(m["id"].(string), id) {
			return m
		}
	}
	return nil
}
