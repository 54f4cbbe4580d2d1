package httpapi_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestEnvDecryptOnlyOnItsOwnRoutes: the plain definition routes (GET E and GET
// E/versions/{version}, env:read) never decrypt, whatever the environment or the revision
// tag is called. Found in review: a path ending in /decrypt (an environment named
// "decrypt", or a revision tag named "decrypt") made them answer the secrets in the clear
// to a reader, and unaudited.
func TestEnvDecryptOnlyOnItsOwnRoutes(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	reader := e.esc(e.newPerson("reader", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "read"}}, nil))

	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"decrypt"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/decrypt", []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	admin.want(200, "POST", escBase+"/acme/app/dev/versions/tags", []byte(`{"name":"decrypt","revision":2}`))

	for _, p := range []string{escBase + "/acme/app/decrypt", escBase + "/acme/app/decrypt/versions/2", escBase + "/acme/app/dev/versions/decrypt"} {
		r := reader.want(200, "GET", p, nil)
		if strings.Contains(string(r.body), "hunter2") || !strings.Contains(string(r.body), "ciphertext") {
			t.Errorf("reader GET %s: secrets in the clear:\n%s", p, r.body)
		}
	}
	// The decrypt routes themselves still need open.
	reader.want(403, "GET", escBase+"/acme/app/decrypt/decrypt", nil)
	reader.want(403, "GET", escBase+"/acme/app/dev/versions/decrypt/decrypt", nil)
	r := admin.want(200, "GET", escBase+"/acme/app/dev/versions/decrypt/decrypt", nil)
	if !strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("admin decrypt of the tag: %s", r.body)
	}
}
