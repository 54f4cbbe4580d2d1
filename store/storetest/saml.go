package storetest

import (
	"errors"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// --- SAML sign-in (migration 0020) ---

func testSAMLConfig(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetSAMLConfig(acme.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetSAMLConfig before any")
		return nil
	})
	epoch := func() (n int64) {
		e.view(func(tx gatehouse.Tx) (err error) { n, err = tx.SecurityEpoch(); return err })
		return n
	}
	until := e.now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	c := &gatehouse.SAMLConfig{OrgID: acme.ID, IDPMetadata: "<EntityDescriptor/>", EntityID: "https://idp.example.com",
		SSOURL: "https://idp.example.com/sso", NameIDFormat: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
		ValidUntil: until, AllowIDPInitiated: true, GroupsAttribute: "groups", ModifiedBy: "alice"}
	before := epoch()
	e.update(func(tx gatehouse.Tx) error { return tx.PutSAMLConfig(c) })
	if epoch() <= before {
		t.Error("PutSAMLConfig did not bump the security epoch")
	}
	if c.Created.IsZero() || !c.Created.Equal(c.Modified) {
		t.Errorf("created %v, modified %v: want both set and equal", c.Created, c.Modified)
	}
	var got *gatehouse.SAMLConfig
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetSAMLConfig(acme.ID); return err })
	if got.EntityID != c.EntityID || got.SSOURL != c.SSOURL || got.NameIDFormat != c.NameIDFormat || !got.ValidUntil.Equal(until) ||
		!got.AllowIDPInitiated || got.GroupsAttribute != "groups" || got.EmailAttribute != "" || got.ModifiedBy != "alice" ||
		got.IDPMetadata != c.IDPMetadata {
		t.Errorf("GetSAMLConfig = %+v, want %+v", got, c)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetSAMLConfig(beta.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "another organization's SAML configuration")
		return nil
	})
	// Replacing keeps Created.
	r := *c
	r.EntityID, r.AllowIDPInitiated, r.MetadataURL, r.ModifiedBy = "https://idp2.example.com", false, "https://idp2.example.com/md", "bob"
	e.update(func(tx gatehouse.Tx) error { return tx.PutSAMLConfig(&r) })
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetSAMLConfig(acme.ID); return err })
	if got.EntityID != "https://idp2.example.com" || got.AllowIDPInitiated || got.MetadataURL != "https://idp2.example.com/md" ||
		got.ModifiedBy != "bob" || !got.Created.Equal(c.Created) || !got.Modified.After(c.Modified) {
		t.Errorf("after replacement GetSAMLConfig = %+v", got)
	}
	e.update(func(tx gatehouse.Tx) error {
		err := tx.PutSAMLConfig(&gatehouse.SAMLConfig{OrgID: beta.ID})
		wantCode(t, err, gatehouse.EINVALID, "PutSAMLConfig without metadata")
		return nil
	})
	before = epoch()
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteSAMLConfig(acme.ID) })
	if epoch() <= before {
		t.Error("DeleteSAMLConfig did not bump the security epoch")
	}
	e.update(func(tx gatehouse.Tx) error {
		wantCode(t, tx.DeleteSAMLConfig(acme.ID), gatehouse.ENOTFOUND, "DeleteSAMLConfig twice")
		_, err := tx.GetSAMLConfig(acme.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetSAMLConfig after delete")
		return nil
	})
}

func testSAMLRequests(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	binding := randDigest()
	req := &gatehouse.SAMLRequest{ID: "id-" + randID(), OrgID: acme.ID, Binding: binding, ReturnTo: "/cli-login?x=1", Expires: e.now().Add(5 * time.Minute)}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(req) })
	// (One refusal per transaction: on PostgreSQL a failed statement ends the transaction.)
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(req) }), gatehouse.ECONFLICT, "CreateSAMLRequest with a taken ID")
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(&gatehouse.SAMLRequest{OrgID: acme.ID}) }),
		gatehouse.EINVALID, "CreateSAMLRequest without an ID")
	// Another organization cannot take it (and does not consume it by trying).
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.TakeSAMLRequest(beta.ID, req.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "TakeSAMLRequest of another organization's request")
		return nil
	})
	var got *gatehouse.SAMLRequest
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.TakeSAMLRequest(acme.ID, req.ID); return err })
	if got.Binding != binding || got.ReturnTo != req.ReturnTo || got.OrgID != acme.ID || !got.Expires.Equal(req.Expires.UTC()) {
		t.Errorf("TakeSAMLRequest = %+v, want %+v", got, req)
	}
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.TakeSAMLRequest(acme.ID, req.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "TakeSAMLRequest twice")
		return nil
	})
	// A rolled-back take leaves the request.
	req2 := &gatehouse.SAMLRequest{ID: "id-" + randID(), OrgID: acme.ID, Binding: binding, Expires: e.now().Add(time.Minute)}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(req2) })
	rollback := errors.New("rollback")
	if err := e.try(func(tx gatehouse.Tx) error {
		if _, err := tx.TakeSAMLRequest(acme.ID, req2.ID); err != nil {
			return err
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	e.update(func(tx gatehouse.Tx) (err error) { _, err = tx.TakeSAMLRequest(acme.ID, req2.ID); return err })
	// An expired request is not taken, and is pruned.
	old := &gatehouse.SAMLRequest{ID: "id-" + randID(), OrgID: acme.ID, Binding: binding, Expires: e.now().Add(-time.Second)}
	old2 := &gatehouse.SAMLRequest{ID: "id-" + randID(), OrgID: acme.ID, Binding: binding, Expires: e.now().Add(-time.Second)}
	live := &gatehouse.SAMLRequest{ID: "id-" + randID(), OrgID: acme.ID, Binding: binding, Expires: e.now().Add(time.Hour)}
	e.update(func(tx gatehouse.Tx) error {
		for _, r := range []*gatehouse.SAMLRequest{old, old2, live} {
			if err := tx.CreateSAMLRequest(r); err != nil {
				return err
			}
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.TakeSAMLRequest(acme.ID, old.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "TakeSAMLRequest of an expired request")
		return nil
	})
	var pruned int64
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneSAML(); return err })
	if pruned != 1 { // old2 (old was deleted by the refused take)
		t.Errorf("PruneSAML = %d, want 1", pruned)
	}
	e.update(func(tx gatehouse.Tx) (err error) { _, err = tx.TakeSAMLRequest(acme.ID, live.ID); return err })
}

func testConsumeSAMLAssertion(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	consume := func(orgID int64, key string, until time.Time) bool {
		t.Helper()
		var ok bool
		e.update(func(tx gatehouse.Tx) (err error) { ok, err = tx.ConsumeSAMLAssertion(orgID, key, until); return err })
		return ok
	}
	now := e.now()
	if !consume(acme.ID, "a1", now.Add(time.Hour)) {
		t.Fatal("the first use of an assertion was refused")
	}
	if consume(acme.ID, "a1", now.Add(time.Hour)) {
		t.Fatal("a replayed assertion was accepted")
	}
	if !consume(beta.ID, "a1", now.Add(time.Hour)) || !consume(acme.ID, "a2", now.Add(time.Hour)) {
		t.Fatal("another organization's or another assertion's record refused a sign-in")
	}
	rollback := errors.New("rollback")
	if err := e.try(func(tx gatehouse.Tx) error {
		if ok, err := tx.ConsumeSAMLAssertion(acme.ID, "a3", now.Add(time.Hour)); err != nil || !ok {
			t.Errorf("ConsumeSAMLAssertion = %v, %v", ok, err)
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if !consume(acme.ID, "a3", now.Add(time.Hour)) {
		t.Fatal("a rolled-back sign-in left its record")
	}
	past := e.now().Add(-time.Second)
	if !consume(acme.ID, "old", past) || !consume(acme.ID, "old", past) || !consume(acme.ID, "old2", past) {
		t.Fatal("an expired record refused a sign-in")
	}
	var pruned int64
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneSAML(); return err })
	if pruned != 2 {
		t.Errorf("PruneSAML = %d, want 2", pruned)
	}
	if consume(acme.ID, "a1", now.Add(time.Hour)) {
		t.Error("pruning removed a live record")
	}
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.ConsumeSAMLAssertion(acme.ID, "", now.Add(time.Hour))
		wantCode(t, err, gatehouse.EINVALID, "ConsumeSAMLAssertion without a key")
		return nil
	})
}

// testRaceConsumeSAMLAssertion: of racers presenting one assertion (on several processes),
// exactly one signs in.
func testRaceConsumeSAMLAssertion(t *testing.T, e *env) {
	acme := e.org("acme")
	until := e.now().Add(time.Hour)
	won := make([]bool, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			won[i], err = tx.ConsumeSAMLAssertion(acme.ID, "race-assertion", until)
			return err
		})
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("ConsumeSAMLAssertion %d: %v", i, err)
		}
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d racers signed in with one assertion, want exactly 1", n)
	}
}

// testRaceTakeSAMLRequest: of racers answering one AuthnRequest, exactly one takes it.
func testRaceTakeSAMLRequest(t *testing.T, e *env) {
	acme := e.org("acme")
	req := &gatehouse.SAMLRequest{ID: "id-race", OrgID: acme.ID, Binding: randDigest(), Expires: e.now().Add(time.Hour)}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(req) })
	took := make([]bool, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			_, err := tx.TakeSAMLRequest(acme.ID, req.ID)
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return nil
			}
			took[i] = err == nil
			return err
		})
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("TakeSAMLRequest %d: %v", i, err)
		}
		if took[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d racers took one SAML request, want exactly 1", n)
	}
}
