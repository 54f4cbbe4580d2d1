package posture_test

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/posture"
)

// TestPersonalUseOnlyInMemberOrgs (finding 1): a personal token's use recorded with an
// organization its user does not belong to is not attributed to it: no anomaly there,
// no target of it in the inventory (one personal-token-in-ci per token and day: it
// goes to the member organization's use or to none).
func TestPersonalUseOnlyInMemberOrgs(t *testing.T) {
	db, clk, _ := openStore(t)
	var acme, globex gatehouse.Org
	var tk *gatehouse.Token
	update(t, db, func(tx gatehouse.Tx) error {
		acme = gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
		globex = gatehouse.Org{Name: "globex", Settings: gatehouse.DefaultOrgSettings()}
		must(t, tx.CreateOrg(&acme))
		must(t, tx.CreateOrg(&globex))
		u := &gatehouse.User{Name: "mallory"}
		must(t, tx.CreateUser(u))
		must(t, tx.PutMember(globex.ID, u.ID, gatehouse.RoleMember))
		tk = mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "laptop", UserID: u.ID})
		return nil
	})
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	rec.Record(posture.Use{Token: tk, OrgID: acme.ID, IP: "198.51.100.66", Agent: "github-actions/2.0", Target: "stack:acme/web/prod", At: clk.Now()})
	rec.Record(posture.Use{Token: tk, OrgID: globex.ID, IP: "198.51.100.66", Agent: "github-actions/2.0", Target: "stack:globex/g/prod", At: clk.Now()})
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.View(context.Background(), func(tx gatehouse.Tx) error {
		as, err := tx.ListAnomalies(acme.ID, clk.Now().AddDate(0, 0, -1), 100)
		must(t, err)
		if len(as) != 0 {
			t.Errorf("anomalies planted in acme: %+v", as)
		}
		u, err := tx.GetTokenUsage(tk.ID)
		must(t, err)
		for _, g := range u.Targets {
			if g.Name == "acme/web/prod" {
				t.Errorf("acme's stack in the inventory: %+v", u.Targets)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
