package httpapi

import (
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

// The cache's rule: it holds one epoch, only moves forward, and a transaction that saw
// another epoch than the cache's neither reads from it nor stores into it.
func TestAuthCacheEpochRule(t *testing.T) {
	c := newAuthCache()
	var d [32]byte
	loads := 0
	load := func(name string) func() (*authz.Subject, error) {
		return func() (*authz.Subject, error) {
			loads++
			return &authz.Subject{Kind: authz.UserKind, User: &gatehouse.User{Name: name}}, nil
		}
	}
	get := func(epoch int64, name string) string {
		t.Helper()
		sub, err := c.subject(epoch, d, load(name))
		if err != nil {
			t.Fatal(err)
		}
		return sub.User.Name
	}
	if got := get(5, "at5"); got != "at5" || loads != 1 {
		t.Fatalf("first load: %s, %d loads", got, loads)
	}
	if got := get(5, "again"); got != "at5" || loads != 1 {
		t.Fatalf("same epoch: %s, %d loads; want the cached subject", got, loads)
	}
	// An older transaction: loads on its own, stores nothing, moves nothing.
	if got := get(4, "at4"); got != "at4" || loads != 2 || c.epoch != 5 {
		t.Fatalf("older epoch: %s, %d loads, cache epoch %d", got, loads, c.epoch)
	}
	if got := get(5, "again"); got != "at5" {
		t.Fatalf("after an older transaction the cache holds %s", got)
	}
	// A newer one: everything older is dropped.
	if got := get(6, "at6"); got != "at6" || c.epoch != 6 {
		t.Fatalf("newer epoch: %s, cache epoch %d", got, c.epoch)
	}
	if got := get(6, "again"); got != "at6" {
		t.Fatalf("newer epoch cached %s", got)
	}
	// A load that ends after the cache moved on is not stored under the new epoch.
	_, err := c.subject(6, [32]byte{1}, func() (*authz.Subject, error) {
		if _, err := c.subject(7, d, load("at7")); err != nil { // a newer request meanwhile
			return nil, err
		}
		return &authz.Subject{Kind: authz.UserKind, User: &gatehouse.User{Name: "late"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.subjects[[32]byte{1}]; ok || c.epoch != 7 {
		t.Fatalf("a load of epoch 6 was stored at epoch %d", c.epoch)
	}
	// Organization facts follow the same rule.
	org := &gatehouse.Org{ID: 1, Name: "acme"}
	sub := &authz.Subject{Kind: authz.UserKind, User: &gatehouse.User{ID: 2}}
	facts := func(role gatehouse.Role) func() (*gatehouse.Org, authz.Facts, error) {
		return func() (*gatehouse.Org, authz.Facts, error) { return org, authz.Facts{Role: role}, nil }
	}
	if _, f, _ := c.orgFacts(6, "acme", sub, facts(gatehouse.RoleAdmin)); f.Role != gatehouse.RoleAdmin {
		t.Fatalf("older transaction's facts: %v", f.Role)
	}
	if _, f, _ := c.orgFacts(7, "acme", sub, facts(gatehouse.RoleMember)); f.Role != gatehouse.RoleMember {
		t.Fatalf("current facts: %v (the older transaction's were stored)", f.Role)
	}
}
