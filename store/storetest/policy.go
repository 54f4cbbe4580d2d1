package storetest

import (
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testPolicy: pack versions numbered per name, archives checked against their digest,
// pending versions cleaned up, single-use upload URLs, groups replaced by name, results
// filtered, settings bumping the security epoch.
func testPolicy(t *testing.T, e *env) {
	acme := e.org("acme")
	st := e.stack(acme.ID, "p", "dev", nil)
	p1 := &gatehouse.PolicyPack{OrgID: acme.ID, Name: "sec", VersionTag: "1.0.0", Metadata: []byte(`{"name":"sec"}`), CreatedBy: "alice"}
	p2 := &gatehouse.PolicyPack{OrgID: acme.ID, Name: "sec", VersionTag: "1.1.0"}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreatePolicyPack(p1); err != nil {
			return err
		}
		return tx.CreatePolicyPack(p2)
	})
	if p1.Version != 1 || p2.Version != 2 || p1.Status != gatehouse.PolicyPackPending {
		t.Fatalf("versions %d %d, status %s", p1.Version, p2.Version, p1.Status)
	}
	wantCode(t, e.try(func(tx gatehouse.Tx) error {
		return tx.CreatePolicyPack(&gatehouse.PolicyPack{OrgID: acme.ID, Name: "sec", VersionTag: "1.0.0"})
	}), gatehouse.ECONFLICT, "a version tag twice")
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.CompletePolicyPack(p1.ID) }), gatehouse.EINVALID, "complete before the upload")
	archive := []byte("\x1f\x8bpack")
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.PutPolicyPackArchive(p1.ID, archive); err != nil {
			return err
		}
		return tx.CompletePolicyPack(p1.ID)
	})
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.PutPolicyPackArchive(p1.ID, []byte("x")) }), gatehouse.ECONFLICT, "an upload to a ready version")
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetPolicyPack(acme.ID, "sec", "1.0.0")
		if err != nil {
			return err
		}
		if got.Status != gatehouse.PolicyPackReady || got.Size != int64(len(archive)) || len(got.Digest) != 64 || got.CreatedBy != "alice" || string(got.Metadata) != `{"name":"sec"}` {
			t.Errorf("GetPolicyPack = %+v", got)
		}
		b, err := tx.GetPolicyPackArchive(p1.ID)
		if err != nil || string(b) != string(archive) {
			t.Errorf("GetPolicyPackArchive = %q, %v", b, err)
		}
		l, err := tx.ListPolicyPacks(acme.ID)
		if err != nil || len(l) != 2 || l[0].VersionTag != "1.0.0" || l[1].VersionTag != "1.1.0" {
			t.Errorf("ListPolicyPacks = %+v, %v", l, err)
		}
		return nil
	})

	// URLs: an upload URL is spent once; a download URL lasts until it expires.
	up := gatehouse.PolicyURL{Digest: [32]byte{1}, Purpose: "upload", PackID: p2.ID, Expires: e.now().Add(time.Minute)}
	down := gatehouse.PolicyURL{Digest: [32]byte{2}, Purpose: "download", PackID: p1.ID, UpdateID: "u1", Expires: e.now().Add(time.Minute)}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreatePolicyURL(&up); err != nil {
			return err
		}
		return tx.CreatePolicyURL(&down)
	})
	// Checking an upload URL (in a read transaction) does not spend it.
	for i := 0; i < 2; i++ {
		e.view(func(tx gatehouse.Tx) error {
			u, err := tx.CheckPolicyURL(up.Digest, "upload")
			if err != nil || u.PackID != p2.ID {
				t.Errorf("CheckPolicyURL(upload) = %+v, %v", u, err)
			}
			return nil
		})
	}
	e.update(func(tx gatehouse.Tx) error {
		u, err := tx.UsePolicyURL(up.Digest, "upload")
		if err != nil || u.PackID != p2.ID {
			t.Errorf("UsePolicyURL(upload) = %+v, %v", u, err)
		}
		return nil
	})
	wantCode(t, e.try(func(tx gatehouse.Tx) error { _, err := tx.UsePolicyURL(up.Digest, "upload"); return err }), gatehouse.EGONE, "an upload URL used twice")
	wantCode(t, e.s.View(e.ctx, func(tx gatehouse.Tx) error { _, err := tx.CheckPolicyURL(up.Digest, "upload"); return err }), gatehouse.EGONE, "checking a spent upload URL")
	wantCode(t, e.s.View(e.ctx, func(tx gatehouse.Tx) error { _, err := tx.CheckPolicyURL([32]byte{9}, "upload"); return err }), gatehouse.ENOTFOUND, "checking an unknown URL")
	wantCode(t, e.try(func(tx gatehouse.Tx) error { _, err := tx.UsePolicyURL(up.Digest, "download"); return err }), gatehouse.ENOTFOUND, "an upload URL used to download")
	for i := 0; i < 2; i++ {
		e.update(func(tx gatehouse.Tx) error {
			u, err := tx.UsePolicyURL(down.Digest, "download")
			if err != nil || u.UpdateID != "u1" {
				t.Errorf("UsePolicyURL(download) = %+v, %v", u, err)
			}
			return nil
		})
	}
	if e.clock != nil {
		e.clock.Advance(2 * time.Minute)
		wantCode(t, e.try(func(tx gatehouse.Tx) error { _, err := tx.UsePolicyURL(down.Digest, "download"); return err }), gatehouse.EGONE, "an expired download URL")
	}
	// Pending versions created before a time are deleted with their URLs.
	var n int
	e.update(func(tx gatehouse.Tx) (err error) {
		n, err = tx.DeletePendingPolicyPacks(tx.Now().Add(time.Second))
		return
	})
	if n != 1 {
		t.Errorf("DeletePendingPolicyPacks = %d, want 1", n)
	}
	wantCode(t, e.try(func(tx gatehouse.Tx) error { _, err := tx.GetPolicyPack(acme.ID, "sec", "1.1.0"); return err }), gatehouse.ENOTFOUND, "a cleaned-up version")

	// Groups.
	g := &gatehouse.PolicyGroup{OrgID: acme.ID, Name: "prod", Selectors: []gatehouse.Scope{{TagName: "env", TagValue: "prod"}, {StackID: st.ID}},
		Packs: []gatehouse.PolicyGroupPack{{Name: "sec", VersionTag: "1.0.0"}}}
	e.update(func(tx gatehouse.Tx) error { return tx.PutPolicyGroup(g) })
	g.Packs = nil
	e.update(func(tx gatehouse.Tx) error { return tx.PutPolicyGroup(g) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetPolicyGroup(acme.ID, "prod")
		if err != nil {
			return err
		}
		if got.ID != g.ID || len(got.Selectors) != 2 || got.Selectors[1].StackID != st.ID || len(got.Packs) != 0 {
			t.Errorf("GetPolicyGroup = %+v", got)
		}
		l, err := tx.ListPolicyGroups(acme.ID)
		if err != nil || len(l) != 1 {
			t.Errorf("ListPolicyGroups = %+v, %v", l, err)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeletePolicyGroup(acme.ID, "prod") })
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.DeletePolicyGroup(acme.ID, "prod") }), gatehouse.ENOTFOUND, "a deleted group")

	// Results.
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendPolicyResults([]gatehouse.PolicyResult{
			{OrgID: acme.ID, StackID: st.ID, UpdateID: "u1", Kind: "violation", PackName: "sec", Level: "mandatory", Message: "m1"},
			{OrgID: acme.ID, StackID: st.ID, UpdateID: "u2", Kind: "summary", PackName: "other"},
		})
	})
	e.view(func(tx gatehouse.Tx) error {
		all, err := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: acme.ID})
		if err != nil || len(all) != 2 || all[0].Kind != "summary" || all[1].StackRef == nil || all[1].StackRef.Stack != "dev" {
			t.Errorf("ListPolicyResults = %+v, %v", all, err)
		}
		for _, f := range []gatehouse.PolicyResultFilter{{OrgID: acme.ID, PackName: "sec"}, {OrgID: acme.ID, UpdateID: "u1"}, {OrgID: acme.ID, Kind: "violation", StackID: st.ID}, {OrgID: acme.ID, Limit: 1},
			{OrgID: acme.ID, StackIDs: []int64{st.ID, st.ID + 1000}, Limit: 1}} {
			if l, err := tx.ListPolicyResults(f); err != nil || len(l) != 1 {
				t.Errorf("ListPolicyResults(%+v) = %d, %v", f, len(l), err)
			}
		}
		for _, ids := range [][]int64{{}, {st.ID + 1000}} {
			if l, err := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: acme.ID, StackIDs: ids}); err != nil || len(l) != 0 {
				t.Errorf("ListPolicyResults(StackIDs %v) = %d, %v", ids, len(l), err)
			}
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(st.ID) })
	e.view(func(tx gatehouse.Tx) error {
		if l, _ := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: acme.ID}); len(l) != 0 {
			t.Errorf("results outlived their stack: %+v", l)
		}
		return nil
	})

	// Settings: zero until set; setting bumps the security epoch.
	var before, after int64
	e.view(func(tx gatehouse.Tx) error {
		s, err := tx.GetPolicySettings(acme.ID)
		if err != nil || s.Enforced || len(s.ApprovedProviders) != 0 {
			t.Errorf("GetPolicySettings (unset) = %+v, %v", s, err)
		}
		before, err = tx.SecurityEpoch()
		return err
	})
	for _, list := range [][]gatehouse.ApprovedProvider{{{Name: "aws", Versions: ">=6.0.0"}}, {{Name: "aws"}, {Name: "random"}}} {
		e.update(func(tx gatehouse.Tx) error {
			return tx.PutPolicySettings(&gatehouse.PolicySettings{OrgID: acme.ID, Enforced: true, ApprovedProviders: list})
		})
	}
	e.view(func(tx gatehouse.Tx) error {
		s, err := tx.GetPolicySettings(acme.ID)
		if err != nil || !s.Enforced || len(s.ApprovedProviders) != 2 || s.ApprovedProviders[1].Name != "random" {
			t.Errorf("GetPolicySettings = %+v, %v", s, err)
		}
		after, err = tx.SecurityEpoch()
		return err
	})
	if after <= before {
		t.Errorf("PutPolicySettings did not bump the security epoch (%d -> %d)", before, after)
	}
}
