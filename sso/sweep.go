package sso

import (
	"context"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// The session sweep. Ended sessions and expired sign-in states are refused anyway (Lookup
// checks a session's expiries; TakeSSOState refuses an expired state), and sign-ins delete
// them as they go; this sweep, every Config.SweepInterval, deletes them also when nobody
// signs in, so that an ended session's row (user, address, user agent) does not outlive
// its session for long: ended sessions, expired OIDC and GitHub sign-in states, and
// expired SAML requests and assertion-replay records.
//
// Several processes may sweep one database: each sweep is one transaction of deletes of
// rows already past their expiry, which are idempotent (a row another process deleted
// first is simply not counted).

// DefaultSweepInterval is how often StartSweeper's sweep runs when Config.SweepInterval is 0.
const DefaultSweepInterval = 5 * time.Minute

// Sweep deletes the ended sessions and the expired sign-in states now and returns how many
// rows this call deleted.
func (m *Manager) Sweep(ctx context.Context) (int64, error) {
	var n int64
	err := m.store.Update(ctx, func(tx gatehouse.Tx) error {
		s, err := tx.PruneSessions(tx.Now())
		if err != nil {
			return err
		}
		r, err := tx.PruneSAML()
		if err != nil {
			return err
		}
		n = s + r
		return nil
	})
	return n, err
}

// StartSweeper starts the sweep (every Config.SweepInterval); Close stops it. Starting it
// twice, or after Close, does nothing.
func (m *Manager) StartSweeper() {
	m.sweep.Start(m.cfg.SweepInterval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		switch n, err := m.Sweep(ctx); {
		case err != nil:
			m.cfg.Log.Warn("sso: sweeping ended sessions and expired sign-in states failed", "err", err)
		case n > 0:
			m.cfg.Log.Debug("sso: swept ended sessions and expired sign-in states", "rows", n)
		}
	})
}

// Close stops the sweep and waits for a sweep in progress.
func (m *Manager) Close() { m.sweep.Stop() }
