package storetest

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func (e *env) environment(orgID int64, project, name string) *gatehouse.Environment {
	e.t.Helper()
	en := &gatehouse.Environment{OrgID: orgID, Project: project, Name: name, CreatedBy: "alice"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateEnvironment(en, nil) })
	return en
}

// testEnvironments covers environments, revisions, revision tags and deletion protection.
func testEnvironments(t *testing.T, e *env) {
	acme, other := e.org("acme"), e.org("other")
	dev := e.environment(acme.ID, "app", "dev")
	if dev.ID == 0 || dev.Revision != 1 {
		t.Fatalf("CreateEnvironment: id %d revision %d, want an id and revision 1", dev.ID, dev.Revision)
	}
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.CreateEnvironment(&gatehouse.Environment{OrgID: acme.ID, Project: "app", Name: "dev"}, nil)
	})
	wantCode(t, err, gatehouse.ECONFLICT, "CreateEnvironment of a taken name")
	// Same name in another project or organization is another environment.
	e.environment(acme.ID, "other", "dev")
	e.environment(other.ID, "app", "dev")

	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetEnvironment(acme.ID, "app", "dev")
		if err != nil || got.ID != dev.ID || got.OrgName != "acme" || got.CreatedBy != "alice" {
			t.Errorf("GetEnvironment = %+v, %v", got, err)
		}
		_, err = tx.GetEnvironment(acme.ID, "app", "nope")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvironment of a missing one")
		r, err := tx.GetEnvRevision(dev.ID, 1)
		if err != nil || len(r.YAML) != 0 {
			t.Errorf("revision 1 = %+v, %v; want an empty definition", r, err)
		}
		_, err = tx.GetEnvRevision(dev.ID, 2)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvRevision of a missing revision")
		return nil
	})

	// Revisions: an editor with a stale revision loses.
	var rev int
	e.update(func(tx gatehouse.Tx) (err error) {
		rev, err = tx.PutEnvRevision(dev.ID, 1, []byte("values: {a: 1}\n"), "bob")
		return err
	})
	if rev != 2 {
		t.Fatalf("PutEnvRevision = %d, want 2", rev)
	}
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.PutEnvRevision(dev.ID, 1, []byte("x: 1"), "bob"); return err })
	wantCode(t, err, gatehouse.ECONFLICT, "PutEnvRevision with a stale revision")
	e.update(func(tx gatehouse.Tx) (err error) {
		rev, err = tx.PutEnvRevision(dev.ID, -1, []byte("values: {a: 2}\n"), "carol")
		return err
	})
	if rev != 3 {
		t.Fatalf("unconditional PutEnvRevision = %d, want 3", rev)
	}
	// Tags.
	e.update(func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&gatehouse.EnvTag{EnvID: dev.ID, Name: "prod", Revision: 2, EditorLogin: "bob"})
	})
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&gatehouse.EnvTag{EnvID: dev.ID, Name: "prod", Revision: 3})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "CreateEnvTag of an existing tag")
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&gatehouse.EnvTag{EnvID: dev.ID, Name: "future", Revision: 9})
	})
	wantCode(t, err, gatehouse.ENOTFOUND, "CreateEnvTag on a missing revision")
	e.view(func(tx gatehouse.Tx) error {
		env, _ := tx.GetEnvironmentByID(dev.ID)
		if env.Revision != 3 {
			t.Errorf("environment revision %d, want 3", env.Revision)
		}
		revs, err := tx.ListEnvRevisions(dev.ID, 0, 0)
		if err != nil || len(revs) != 3 || revs[0].Number != 3 || revs[1].Number != 2 || len(revs[1].Tags) != 1 || revs[1].Tags[0] != "prod" {
			t.Errorf("ListEnvRevisions = %+v, %v; want 3, 2 (tagged prod), 1", revs, err)
		}
		revs, _ = tx.ListEnvRevisions(dev.ID, 3, 1)
		if len(revs) != 1 || revs[0].Number != 2 {
			t.Errorf("ListEnvRevisions(before 3, count 1) = %+v, want revision 2", revs)
		}
		r, _ := tx.GetEnvRevision(dev.ID, 2)
		if string(r.YAML) != "values: {a: 1}\n" || r.CreatorLogin != "bob" {
			t.Errorf("revision 2 = %q by %q", r.YAML, r.CreatorLogin)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.UpdateEnvTag(dev.ID, "prod", 3, "carol") })
	e.view(func(tx gatehouse.Tx) error {
		tg, err := tx.GetEnvTag(dev.ID, "prod")
		if err != nil || tg.Revision != 3 || tg.EditorLogin != "carol" {
			t.Errorf("GetEnvTag = %+v, %v", tg, err)
		}
		_, err = tx.GetEnvTag(dev.ID, "nope")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvTag of a missing tag")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteEnvTag(dev.ID, "prod") })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteEnvTag(dev.ID, "prod") })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteEnvTag of a missing tag")

	// Listing pages through the organizations asked for only.
	var all []gatehouse.Environment
	cont := ""
	for {
		var page []gatehouse.Environment
		e.view(func(tx gatehouse.Tx) (err error) {
			page, cont, err = tx.ListEnvironments(gatehouse.EnvFilter{OrgIDs: []int64{acme.ID}, Continuation: cont, Limit: 1})
			return err
		})
		all = append(all, page...)
		if cont == "" {
			break
		}
	}
	if len(all) != 2 || all[0].OrgID != acme.ID || all[1].OrgID != acme.ID {
		t.Errorf("ListEnvironments(acme) = %+v, want acme's two", all)
	}

	// Environment tags: name/value, filled into GetEnvironment.
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.SetEnvKVTag(&gatehouse.EnvKVTag{EnvID: dev.ID, Name: "env", Value: "dev", EditorLogin: "bob"}); err != nil {
			return err
		}
		return tx.SetEnvKVTag(&gatehouse.EnvKVTag{EnvID: dev.ID, Name: "env", Value: "production"})
	})
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetEnvironment(acme.ID, "app", "dev")
		if err != nil || got.Tags["env"] != "production" || len(got.Tags) != 1 {
			t.Errorf("environment tags = %v, %v", got.Tags, err)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteEnvKVTag(dev.ID, "env") })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteEnvKVTag(dev.ID, "env") })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteEnvKVTag of a missing tag")
	e.update(func(tx gatehouse.Tx) error {
		return tx.SetEnvKVTag(&gatehouse.EnvKVTag{EnvID: dev.ID, Name: "team", Value: "a"})
	})

	// Deletion protection.
	e.update(func(tx gatehouse.Tx) error { return tx.SetEnvironmentProtected(dev.ID, true) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteEnvironment(dev.ID) })
	wantCode(t, err, gatehouse.ECONFLICT, "DeleteEnvironment of a protected environment")
	e.update(func(tx gatehouse.Tx) error { return tx.SetEnvironmentProtected(dev.ID, false) })
	e.update(func(tx gatehouse.Tx) (err error) { _, err = tx.CreateEnvKey(dev.ID, []byte("k")); return err })
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteEnvironment(dev.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetEnvironmentByID(dev.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvironmentByID after delete")
		_, err = tx.GetEnvRevision(dev.ID, 1)
		wantCode(t, err, gatehouse.ENOTFOUND, "revision after delete")
		_, err = tx.GetEnvKey(dev.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "data key after delete")
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteEnvironment(dev.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteEnvironment twice")
}

// testEnvSessionsAndKeys covers open sessions (expiry) and data keys (first wins).
func testEnvSessionsAndKeys(t *testing.T, e *env) {
	acme := e.org("acme")
	en := e.environment(acme.ID, "default", "s")
	now := e.now()
	e.update(func(tx gatehouse.Tx) error {
		return tx.CreateEnvSession(&gatehouse.EnvSession{ID: "s1", OrgID: acme.ID, EnvID: en.ID, Revision: 1, Owner: "user:1", Data: []byte("sealed"), Expires: now.Add(time.Hour)})
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.CreateEnvSession(&gatehouse.EnvSession{ID: "s2", OrgID: acme.ID, EnvID: en.ID, Revision: 1, Owner: "user:1", Data: []byte("x"), Expires: now.Add(time.Millisecond)})
	})
	e.view(func(tx gatehouse.Tx) error {
		s, err := tx.GetEnvSession("s1")
		if err != nil || s.EnvID != en.ID || s.Owner != "user:1" || !bytes.Equal(s.Data, []byte("sealed")) {
			t.Errorf("GetEnvSession = %+v, %v", s, err)
		}
		if s.OrgID != acme.ID {
			t.Errorf("session org %d, want %d", s.OrgID, acme.ID)
		}
		_, err = tx.GetEnvSession("nope")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvSession of an unknown id")
		return nil
	})
	if e.clock != nil {
		e.clock.Advance(2 * time.Second)
	} else {
		time.Sleep(20 * time.Millisecond)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetEnvSession("s2")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetEnvSession of an expired session")
		return nil
	})
	// Anonymous sessions (yaml/open) have no environment; the org's key is -org id.
	e.update(func(tx gatehouse.Tx) error {
		if _, err := tx.CreateEnvKey(-acme.ID, []byte("org-key")); err != nil {
			return err
		}
		return tx.CreateEnvSession(&gatehouse.EnvSession{ID: "anon", OrgID: acme.ID, Owner: "user:1", Data: []byte("x"), Expires: e.now().Add(time.Hour)})
	})
	e.view(func(tx gatehouse.Tx) error {
		s, err := tx.GetEnvSession("anon")
		if err != nil || s.EnvID != 0 || s.OrgID != acme.ID {
			t.Errorf("anonymous session = %+v, %v", s, err)
		}
		return nil
	})
	var got []byte
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.CreateEnvKey(en.ID, []byte("first")); return err })
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.CreateEnvKey(en.ID, []byte("second")); return err })
	if string(got) != "first" {
		t.Errorf("second CreateEnvKey returned %q, want the first key", got)
	}
	// Rotation: compare-and-swap.
	err := e.try(func(tx gatehouse.Tx) error { return tx.ReplaceEnvKey(en.ID, []byte("stale"), []byte("new")) })
	wantCode(t, err, gatehouse.ECONFLICT, "ReplaceEnvKey with a stale key")
	e.update(func(tx gatehouse.Tx) error { return tx.ReplaceEnvKey(en.ID, []byte("first"), []byte("new")) })
	e.view(func(tx gatehouse.Tx) error {
		keys, err := tx.ListEnvKeys()
		if err != nil || len(keys) != 2 || keys[0].EnvID != -acme.ID || keys[1].EnvID != en.ID || string(keys[1].Wrapped) != "new" {
			t.Errorf("ListEnvKeys = %+v, %v", keys, err)
		}
		return nil
	})
}

// testEnvScopes covers grants and protection rules on environment scopes.
func testEnvScopes(t *testing.T, e *env) {
	acme := e.org("acme")
	en := e.environment(acme.ID, "app", "prod")
	tm := e.team(acme.ID, "ops")
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{EnvID: en.ID}, Permission: gatehouse.PermRead, Decrypt: true, MaxOpen: 90 * time.Minute}); err != nil {
			return err
		}
		if err := tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{EnvProject: "app"}, Permission: gatehouse.PermWrite}); err != nil {
			return err
		}
		// A stack project grant of the same name is another scope.
		if err := tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{Project: "app"}, Permission: gatehouse.PermRead}); err != nil {
			return err
		}
		return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{EnvID: en.ID}})
	})
	e.view(func(tx gatehouse.Tx) error {
		gs, err := tx.ListGrants(tm.ID)
		if err != nil || len(gs) != 3 {
			t.Fatalf("ListGrants = %+v, %v; want 3", gs, err)
		}
		n := 0
		for _, g := range gs {
			if g.Scope.EnvID == en.ID && g.Decrypt && g.Permission == gatehouse.PermRead && g.MaxOpen == 90*time.Minute {
				n++
			}
			if g.Scope.EnvProject == "app" && g.Permission == gatehouse.PermWrite && g.MaxOpen == 0 {
				n++
			}
		}
		if n != 2 {
			t.Errorf("environment grants not read back: %+v", gs)
		}
		ps, _ := tx.ListProtections(acme.ID)
		if len(ps) != 1 || ps[0].Scope.EnvID != en.ID {
			t.Errorf("ListProtections = %+v", ps)
		}
		return nil
	})
	// A grant by environment tag reads back; a protection rule by environment tag is refused
	// (tag rules select environments already).
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{EnvTagName: "team", EnvTagValue: "core"}, Permission: gatehouse.PermAdmin})
	})
	e.view(func(tx gatehouse.Tx) error {
		gs, _ := tx.ListGrants(tm.ID)
		found := false
		for _, g := range gs {
			if g.Scope.EnvTagName == "team" && g.Scope.EnvTagValue == "core" && g.Scope.IsEnv() && g.Permission == gatehouse.PermAdmin {
				found = true
			}
		}
		if !found {
			t.Errorf("environment tag grant not read back: %+v", gs)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.DeleteGrant(tm.ID, gatehouse.Scope{EnvTagName: "team", EnvTagValue: "core"})
	})
	err0 := e.try(func(tx gatehouse.Tx) error {
		return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{EnvTagName: "team", EnvTagValue: "core"}})
	})
	wantCode(t, err0, gatehouse.EINVALID, "a protection rule by environment tag")
	// An open limit is for environment grants only.
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{Project: "app"}, Permission: gatehouse.PermRead, MaxOpen: time.Hour})
	})
	wantCode(t, err, gatehouse.EINVALID, "an open limit on a stack grant")
	// Deleting the environment drops the rules that name it, and moves the security epoch.
	var before, after int64
	e.view(func(tx gatehouse.Tx) (err error) { before, err = tx.SecurityEpoch(); return err })
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteEnvironment(en.ID) })
	e.view(func(tx gatehouse.Tx) (err error) { after, err = tx.SecurityEpoch(); return err })
	if after <= before {
		t.Errorf("security epoch %d -> %d: deleting an environment with grants must bump it", before, after)
	}
	e.view(func(tx gatehouse.Tx) error {
		gs, _ := tx.ListGrants(tm.ID)
		ps, _ := tx.ListProtections(acme.ID)
		if len(gs) != 2 || len(ps) != 0 {
			t.Errorf("after delete: grants %+v protections %+v; want the two project grants, no protection", gs, ps)
		}
		return nil
	})
}

// testRaceEnvRevision races editors holding the same revision: exactly one wins.
func testRaceEnvRevision(t *testing.T, e *env) {
	acme := e.org("acme")
	en := e.environment(acme.ID, "default", "race")
	var wins atomic.Int32
	errs := e.race(8, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			_, err := tx.PutEnvRevision(en.ID, 1, []byte("values: {}"), "racer")
			return err
		})
	})
	for _, err := range errs {
		switch {
		case err == nil:
			wins.Add(1)
		case !gatehouse.IsCode(err, gatehouse.ECONFLICT):
			t.Errorf("racing PutEnvRevision: %v, want success or ECONFLICT", err)
		}
	}
	if wins.Load() != 1 {
		t.Errorf("%d editors won with the same revision, want exactly 1", wins.Load())
	}
}

// testEnvRetract covers RetractEnvRevision: the default replacement skips retracted
// revisions, tags move, the latest and retracted revisions are refused, tags cannot name a
// retracted revision.
func testEnvRetract(t *testing.T, e *env) {
	acme := e.org("acme")
	dev := e.environment(acme.ID, "app", "dev")
	for i := 0; i < 3; i++ { // revisions 2, 3, 4
		e.update(func(tx gatehouse.Tx) error {
			_, err := tx.PutEnvRevision(dev.ID, -1, []byte("values: {}\n"), "alice")
			return err
		})
	}
	e.update(func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&gatehouse.EnvTag{EnvID: dev.ID, Name: "prod", Revision: 3})
	})
	retract := func(n, repl int) (int, error) {
		var used int
		err := e.try(func(tx gatehouse.Tx) error {
			var err error
			used, err = tx.RetractEnvRevision(dev.ID, n, repl, "bob", "why")
			return err
		})
		return used, err
	}
	_, err := retract(4, 0)
	wantCode(t, err, gatehouse.EINVALID, "retracting the latest revision")
	_, err = retract(3, 3)
	wantCode(t, err, gatehouse.EINVALID, "a revision replacing itself")
	_, err = retract(3, 7)
	wantCode(t, err, gatehouse.EINVALID, "a missing replacement")
	_, err = retract(9, 0)
	wantCode(t, err, gatehouse.ENOTFOUND, "retracting a missing revision")
	if used, err := retract(2, 0); err != nil || used != 1 {
		t.Fatalf("retract 2 = %d, %v; want replacement 1", used, err)
	}
	_, err = retract(2, 0)
	wantCode(t, err, gatehouse.ECONFLICT, "retracting twice")
	_, err = retract(3, 2)
	wantCode(t, err, gatehouse.EINVALID, "a retracted replacement")
	if used, err := retract(3, 0); err != nil || used != 1 {
		t.Fatalf("retract 3 = %d, %v; want replacement 1 (2 is retracted)", used, err)
	}
	e.view(func(tx gatehouse.Tx) error {
		tg, err := tx.GetEnvTag(dev.ID, "prod")
		if err != nil || tg.Revision != 1 || tg.EditorLogin != "bob" {
			t.Errorf("tag prod after retraction = %+v, %v; want revision 1 edited by bob", tg, err)
		}
		r, err := tx.GetEnvRevision(dev.ID, 3)
		if err != nil || r.Retracted == nil || r.Retracted.Replacement != 1 || r.Retracted.ByLogin != "bob" || r.Retracted.Reason != "why" || r.Retracted.At.IsZero() {
			t.Errorf("GetEnvRevision(3) = %+v, %v", r, err)
		}
		revs, err := tx.ListEnvRevisions(dev.ID, 0, 0)
		if err != nil || len(revs) != 4 || revs[0].Retracted != nil || revs[1].Retracted == nil || revs[2].Retracted == nil || revs[3].Retracted != nil {
			t.Errorf("ListEnvRevisions = %+v, %v", revs, err)
		}
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&gatehouse.EnvTag{EnvID: dev.ID, Name: "old", Revision: 2})
	})
	wantCode(t, err, gatehouse.EINVALID, "a tag on a retracted revision")
	err = e.try(func(tx gatehouse.Tx) error { return tx.UpdateEnvTag(dev.ID, "prod", 3, "bob") })
	wantCode(t, err, gatehouse.EINVALID, "moving a tag to a retracted revision")
}
