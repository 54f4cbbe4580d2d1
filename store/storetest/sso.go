package storetest

import (
	"crypto/sha256"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testSessions: sessions found by digest only, touched forward (never past the absolute
// expiry), ended one by one, per user, or per user and organization; pruned when over.
func testSessions(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	bob, carol := e.user("bob"), e.user("carol")
	now := e.now()
	mk := func(name string, user, org int64, method string) *gatehouse.Session {
		return &gatehouse.Session{Digest: sha256.Sum256([]byte(name)), UserID: user, OrgID: org, Method: method,
			IdleExpires: now.Add(time.Hour), Expires: now.Add(12 * time.Hour), CSRF: "csrf-" + name, IP: "192.0.2.1", Agent: "browser"}
	}
	s1 := mk("s1", bob.ID, acme.ID, gatehouse.SignInOIDC)
	s1.IdPNotAfter = now.Add(8 * time.Hour)
	s2 := mk("s2", bob.ID, beta.ID, gatehouse.SignInSAML)
	s3 := mk("s3", bob.ID, 0, gatehouse.SignInToken)
	s4 := mk("s4", carol.ID, acme.ID, gatehouse.SignInGitHub)
	for _, s := range []*gatehouse.Session{s1, s2, s3, s4} {
		e.update(func(tx gatehouse.Tx) error { return tx.CreateSession(s) })
	}
	if len(s1.ID) < 32 || s1.Created.IsZero() || !s1.LastSeen.Equal(s1.Created) || s1.ID == s2.ID {
		t.Fatalf("CreateSession = %+v: want a random ID, Created = LastSeen", s1)
	}
	err := e.try(func(tx gatehouse.Tx) error { return tx.CreateSession(mk("s1", carol.ID, 0, gatehouse.SignInOIDC)) })
	wantCode(t, err, gatehouse.ECONFLICT, "a second session with the same digest")
	err = e.try(func(tx gatehouse.Tx) error { return tx.CreateSession(&gatehouse.Session{UserID: bob.ID}) })
	wantCode(t, err, gatehouse.EINVALID, "a session without method, expiries, CSRF token")
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetSessionByDigest(sha256.Sum256([]byte("s1")))
		if err != nil {
			return err
		}
		if got.ID != s1.ID || got.UserID != bob.ID || got.OrgID != acme.ID || got.Method != gatehouse.SignInOIDC || got.CSRF != "csrf-s1" ||
			!got.Expires.Equal(s1.Expires) || !got.IdleExpires.Equal(s1.IdleExpires) || !got.IdPNotAfter.Equal(s1.IdPNotAfter) ||
			!got.Created.Equal(s1.Created) || got.IP != "192.0.2.1" || got.Agent != "browser" {
			t.Errorf("GetSessionByDigest = %+v, want %+v", got, s1)
		}
		if got, err := tx.GetSessionByDigest(sha256.Sum256([]byte("s3"))); err != nil || got.OrgID != 0 || !got.IdPNotAfter.IsZero() {
			t.Errorf("GetSessionByDigest(s3) = %+v, %v; want no organization, no IdP limit", got, err)
		}
		_, err = tx.GetSessionByDigest(sha256.Sum256([]byte("nope")))
		wantCode(t, err, gatehouse.ENOTFOUND, "GetSessionByDigest of an unknown digest")
		list, err := tx.ListUserSessions(bob.ID)
		if err != nil {
			return err
		}
		if len(list) != 3 || list[0].ID != s3.ID || list[2].ID != s1.ID {
			t.Errorf("ListUserSessions(bob) = %d sessions, want s3, s2, s1 (newest first)", len(list))
		}
		return nil
	})
	// Touch: last seen moves forward, the idle expiry is capped by the absolute one.
	later := now.Add(30 * time.Minute)
	e.update(func(tx gatehouse.Tx) error { return tx.TouchSession(s1.ID, later, now.Add(48*time.Hour)) })
	e.update(func(tx gatehouse.Tx) error { return tx.TouchSession(s1.ID, now, now.Add(time.Hour)) }) // older: last seen stays
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetSessionByDigest(s1.Digest)
		if err != nil {
			return err
		}
		if !got.LastSeen.Equal(later) || !got.IdleExpires.Equal(now.Add(time.Hour)) {
			t.Errorf("after touches: LastSeen %v IdleExpires %v, want %v and %v", got.LastSeen, got.IdleExpires, later, now.Add(time.Hour))
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.TouchSession(s1.ID, later, now.Add(48*time.Hour)) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetSessionByDigest(s1.Digest)
		if err == nil && !got.IdleExpires.Equal(s1.Expires) {
			t.Errorf("IdleExpires = %v, want capped at the absolute expiry %v", got.IdleExpires, s1.Expires)
		}
		return err
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.TouchSession("nope", later, later) })
	wantCode(t, err, gatehouse.ENOTFOUND, "TouchSession of an unknown session")

	// Per user and organization (SCIM deprovisioning), then per user.
	var n int
	e.update(func(tx gatehouse.Tx) (err error) { n, err = tx.DeleteUserSessions(bob.ID, acme.ID); return err })
	if n != 1 {
		t.Errorf("DeleteUserSessions(bob, acme) = %d, want 1", n)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetSessionByDigest(s1.Digest)
		wantCode(t, err, gatehouse.ENOTFOUND, "bob's acme session after DeleteUserSessions(bob, acme)")
		for _, s := range []*gatehouse.Session{s2, s3, s4} {
			if _, err := tx.GetSessionByDigest(s.Digest); err != nil {
				t.Errorf("session %s of another org or user: %v", s.Method, err)
			}
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteSession(s2.ID) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteSession(s2.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteSession twice")
	e.update(func(tx gatehouse.Tx) (err error) { n, err = tx.DeleteUserSessions(bob.ID, 0); return err })
	if n != 1 {
		t.Errorf("DeleteUserSessions(bob, all) = %d, want 1", n)
	}
	e.view(func(tx gatehouse.Tx) error {
		if _, err := tx.GetSessionByDigest(s4.Digest); err != nil {
			t.Errorf("carol's session after bob's were ended: %v", err)
		}
		return nil
	})
	// Pruning: sessions past either expiry or the IdP's limit, and expired states.
	e.update(func(tx gatehouse.Tx) error {
		short := mk("short", carol.ID, 0, gatehouse.SignInToken)
		short.IdPNotAfter = now.Add(time.Minute)
		if err := tx.CreateSession(short); err != nil {
			return err
		}
		return tx.PutSSOState(&gatehouse.SSOState{Digest: sha256.Sum256([]byte("st")), Kind: "oidc", Expires: now.Add(time.Minute)})
	})
	var pruned int64
	e.update(func(tx gatehouse.Tx) (err error) {
		pruned, err = tx.PruneSessions(now.Add(2 * time.Minute))
		return err
	})
	if pruned != 2 {
		t.Errorf("PruneSessions = %d, want 2 (the IdP-limited session and the state)", pruned)
	}
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneSessions(now.Add(13 * time.Hour)); return err })
	if pruned != 1 {
		t.Errorf("PruneSessions past the absolute expiry = %d, want 1", pruned)
	}
	// Idempotent: a second sweep (another process's) finds nothing and fails nothing.
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneSessions(now.Add(13 * time.Hour)); return err })
	if pruned != 0 {
		t.Errorf("a second PruneSessions = %d, want 0", pruned)
	}
}

// testIdentities: identities keyed by (issuer, subject), linked to one user only.
func testIdentities(t *testing.T, e *env) {
	acme := e.org("acme")
	bob, carol := e.user("bob"), e.user("carol")
	now := e.now()
	id := &gatehouse.UserIdentity{Issuer: "https://idp.example", Subject: "00u1", UserID: bob.ID, OrgID: acme.ID, Provider: gatehouse.SignInOIDC, Email: "bob@example.com", LastLogin: now}
	before := e.epoch()
	e.update(func(tx gatehouse.Tx) error { return tx.PutIdentity(id) })
	if e.epoch() == before {
		t.Errorf("linking an identity did not bump the security epoch")
	}
	// A second sign-in updates email and last login.
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutIdentity(&gatehouse.UserIdentity{Issuer: id.Issuer, Subject: id.Subject, UserID: bob.ID, Provider: gatehouse.SignInOIDC, Email: "b@example.com", LastLogin: now.Add(time.Hour)})
	})
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.PutIdentity(&gatehouse.UserIdentity{Issuer: id.Issuer, Subject: id.Subject, UserID: carol.ID, Provider: gatehouse.SignInOIDC})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "linking bob's identity to carol")
	e.update(func(tx gatehouse.Tx) error {
		// Same subject at another issuer is another identity.
		return tx.PutIdentity(&gatehouse.UserIdentity{Issuer: "https://other.example", Subject: "00u1", UserID: carol.ID, Provider: gatehouse.SignInSAML})
	})
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetIdentity(id.Issuer, id.Subject)
		if err != nil {
			return err
		}
		if got.UserID != bob.ID || got.OrgID != acme.ID || got.Email != "b@example.com" || !got.LastLogin.Equal(now.Add(time.Hour)) || !got.Created.Equal(id.Created) {
			t.Errorf("GetIdentity = %+v", got)
		}
		_, err = tx.GetIdentity(id.Issuer, "other")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetIdentity of an unlinked subject")
		list, err := tx.ListUserIdentities(carol.ID)
		if err != nil || len(list) != 1 || list[0].Issuer != "https://other.example" {
			t.Errorf("ListUserIdentities(carol) = %+v, %v", list, err)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteIdentity(id.Issuer, id.Subject) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteIdentity(id.Issuer, id.Subject) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteIdentity twice")
}

// testOrgSSO: an organization's SSO configuration round-trips and bumps the epoch; sign-in
// states are taken once and never after their expiry.
func testOrgSSO(t *testing.T, e *env) {
	acme := e.org("acme")
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetOrgSSO(acme.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOrgSSO before any configuration")
		return nil
	})
	c := &gatehouse.OrgSSO{OrgID: acme.ID, Methods: []string{gatehouse.SignInOIDC}, Required: true, BreakGlass: []int64{7}, JITRole: gatehouse.RoleMember,
		GroupTeams: map[string]string{"eng": "engineers"},
		OIDC:       &gatehouse.OIDCSSO{Issuer: "https://idp.example", ClientID: "cid", ClientSecret: []byte{1, 2, 3}},
		GitHub:     &gatehouse.GitHubSSO{ClientID: "gh", ClientSecret: []byte{4}, RequiredOrg: "acme-inc"}}
	before := e.epoch()
	e.update(func(tx gatehouse.Tx) error { return tx.PutOrgSSO(c) })
	if e.epoch() == before {
		t.Errorf("PutOrgSSO did not bump the security epoch")
	}
	c.Required = false
	e.update(func(tx gatehouse.Tx) error { return tx.PutOrgSSO(c) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetOrgSSO(acme.ID)
		if err != nil {
			return err
		}
		if got.OrgID != acme.ID || got.Required || got.JITRole != gatehouse.RoleMember || got.GroupTeams["eng"] != "engineers" || len(got.BreakGlass) != 1 ||
			got.OIDC == nil || got.OIDC.ClientID != "cid" || string(got.OIDC.ClientSecret) != "\x01\x02\x03" || got.GitHub.RequiredOrg != "acme-inc" || got.Modified.IsZero() {
			t.Errorf("GetOrgSSO = %+v", got)
		}
		return nil
	})
	now := e.now()
	st := &gatehouse.SSOState{Digest: sha256.Sum256([]byte("state")), OrgID: acme.ID, Kind: gatehouse.SignInOIDC, Data: []byte(`{"n":1}`), Expires: now.Add(time.Hour)}
	e.update(func(tx gatehouse.Tx) error { return tx.PutSSOState(st) })
	e.update(func(tx gatehouse.Tx) error {
		got, err := tx.TakeSSOState(st.Digest)
		if err != nil {
			return err
		}
		if got.OrgID != acme.ID || got.Kind != gatehouse.SignInOIDC || string(got.Data) != `{"n":1}` {
			t.Errorf("TakeSSOState = %+v", got)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error { _, err := tx.TakeSSOState(st.Digest); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "TakeSSOState twice")
	old := &gatehouse.SSOState{Digest: sha256.Sum256([]byte("old")), Kind: gatehouse.SignInOIDC, Expires: now.Add(-time.Second)}
	e.update(func(tx gatehouse.Tx) error { return tx.PutSSOState(old) })
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.TakeSSOState(old.Digest); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "TakeSSOState after its expiry")
}

func (e *env) epoch() int64 {
	e.t.Helper()
	var n int64
	e.view(func(tx gatehouse.Tx) (err error) { n, err = tx.SecurityEpoch(); return err })
	return n
}
