package httpapi_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// TestSessionSweep: the server's background sweep deletes an ended session and an expired
// sign-in state within a bounded time without anyone signing in, and keeps a live session
// and a live state.
func TestSessionSweep(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.Sessions.SweepInterval = 20 * time.Millisecond })
	ctx := context.Background()
	now := e.clock.Now()
	var uid int64
	var ended, live gatehouse.Session
	e.must(e.srv.Store.Update(ctx, func(tx gatehouse.Tx) error {
		u, err := tx.GetUserByName("alice")
		if err != nil {
			return err
		}
		uid = u.ID
		mk := func(name string, idle time.Duration) gatehouse.Session {
			return gatehouse.Session{Digest: sha256.Sum256([]byte(name)), UserID: uid, Method: gatehouse.SignInToken,
				Created: now, LastSeen: now, IdleExpires: now.Add(idle), Expires: now.Add(12 * time.Hour), CSRF: name}
		}
		ended, live = mk("ended", time.Minute), mk("live", 2*time.Hour)
		for _, s := range []*gatehouse.Session{&ended, &live} {
			if err := tx.CreateSession(s); err != nil {
				return err
			}
		}
		for _, st := range []gatehouse.SSOState{
			{Digest: sha256.Sum256([]byte("old state")), Kind: gatehouse.SignInOIDC, Expires: now.Add(time.Minute)},
			{Digest: sha256.Sum256([]byte("new state")), Kind: gatehouse.SignInOIDC, Expires: now.Add(time.Hour)},
		} {
			if err := tx.PutSSOState(&st); err != nil {
				return err
			}
		}
		return nil
	}))
	e.clock.Advance(10 * time.Minute) // the first session idled out, the first state expired
	rows := func() (sessions, states int) {
		db := e.srv.Store.(*sqlstore.DB).Writer()
		e.must(db.QueryRow("SELECT count(*) FROM sessions").Scan(&sessions))
		e.must(db.QueryRow("SELECT count(*) FROM sso_states").Scan(&states))
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, st := rows()
		if s == 1 && st == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d sessions and %d sign-in states left, want 1 and 1 (the ended ones swept)", s, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.must(e.srv.Store.View(ctx, func(tx gatehouse.Tx) error {
		if _, err := tx.GetSessionByDigest(live.Digest); err != nil {
			t.Errorf("the live session was swept: %v", err)
		}
		if _, err := tx.GetSessionByDigest(ended.Digest); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			t.Errorf("the ended session is still there: %v", err)
		}
		return nil
	}))
	if _, err := e.srv.API.SSO().Sweep(ctx); err != nil {
		t.Fatalf("a second sweep (nothing to delete): %v", err)
	}
}
