package httpapi_test

import (
	"encoding/json"
	"strconv"
	"testing"
)

// TestEnvironmentTagChangesAndTheirEvents: each change of an environment's revision tags and
// key/value tags (create, update, delete; a key/value tag renamed by its update) is made and
// sends its webhook event with its action, tag name and (revision tags) revision.
func TestEnvironmentTagChangesAndTheirEvents(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/dev"
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	c.want(201, "POST", E+"/hooks", []byte(`{"name":"r","payloadUrl":"`+rcv.URL+`","filters":["environment_tag_created","environment_tag_updated","environment_tag_deleted","environment_revision_tag_created","environment_revision_tag_updated","environment_revision_tag_deleted"]}`))
	c.want(200, "PATCH", E, []byte("values: {a: 1}\n")) // revision 2
	c.want(200, "PATCH", E, []byte("values: {a: 2}\n")) // revision 3

	c.want(200, "POST", E+"/versions/tags", []byte(`{"name":"stable","revision":2}`))
	c.want(200, "PATCH", E+"/versions/tags/stable", []byte(`{"revision":3}`))
	var tag struct {
		Revision int `json:"revision"`
	}
	c.want(200, "GET", E+"/versions/tags/stable", nil).json(t, &tag)
	if tag.Revision != 3 {
		t.Errorf("tag stable names revision %d after its update, want 3", tag.Revision)
	}
	c.want(200, "DELETE", E+"/versions/tags/stable", nil)
	c.want(404, "GET", E+"/versions/tags/stable", nil)

	c.want(200, "POST", E+"/tags", []byte(`{"name":"team","value":"core"}`))
	c.want(200, "PATCH", E+"/tags/team", []byte(`{"currentTag":{"value":"core"},"newTag":{"name":"owner","value":"infra"}}`))
	var kv struct {
		Tags map[string]struct {
			Value string `json:"value"`
		} `json:"tags"`
	}
	c.want(200, "GET", E+"/tags", nil).json(t, &kv)
	if _, old := kv.Tags["team"]; old || kv.Tags["owner"].Value != "infra" {
		t.Errorf("tags after the rename: %+v", kv.Tags)
	}
	c.want(200, "DELETE", E+"/tags/owner", nil)

	waitFor(t, e, "webhook deliveries", func() bool { return len(rcv.requests()) >= 6 })
	kinds := map[string]int{}
	for _, rq := range rcv.requests() {
		var p struct {
			Action   string `json:"action"`
			TagName  string `json:"tagName"`
			Revision int    `json:"revision"`
		}
		_ = json.Unmarshal(rq.body, &p)
		kinds[rq.header.Get("Pulumi-Webhook-Kind")+"/"+p.Action+"/"+p.TagName+"/"+strconv.Itoa(p.Revision)]++
	}
	want := []string{"environment_revision_tag/created/stable/2", "environment_revision_tag/updated/stable/3", "environment_revision_tag/deleted/stable/0",
		"environment_tag/created/team/0", "environment_tag/updated/owner/0", "environment_tag/deleted/owner/0"}
	for _, k := range want {
		if kinds[k] != 1 {
			t.Errorf("deliveries: %v; want one %s", kinds, k)
		}
	}
	if len(kinds) != len(want) {
		t.Errorf("deliveries: %v; want %v", kinds, want)
	}
}
