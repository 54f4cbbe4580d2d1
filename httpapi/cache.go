package httpapi

import (
	"strconv"
	"strings"
	"sync"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

// authCache keeps what authentication and authorization read on every request: the
// subject of a token digest, and an organization with the facts about a subject in it. It
// is valid for one security epoch of the store (see gatehouse.Tx.SecurityEpoch): every
// change that could alter a decision advances the epoch in its own transaction, and every
// request reads the epoch first, so a revocation or a removed grant takes effect on the
// next request on every process, exactly as without a cache. Token lifetimes (expiry,
// rotation grace) are checked against the clock on every request.
//
// The cache is tied to the epoch of the transaction that loads into it, not to the epoch
// the cache happens to hold when the load ends: a request whose transaction began before a
// security change reads the old facts (a SQLite read transaction is a snapshot), and what
// it read must never be kept under the new epoch. So each lookup and store names the epoch
// its transaction saw; the cache's own epoch only moves forward, and a request whose
// transaction saw any other epoch than the cache's bypasses the cache both ways (it reads
// and decides on its own transaction's facts, as without a cache, and stores nothing).
type authCache struct {
	mu       sync.Mutex
	epoch    int64
	subjects map[[32]byte]*authz.Subject
	orgs     map[string]cachedOrg
}

type cachedOrg struct {
	org   *gatehouse.Org
	facts authz.Facts
}

const maxCached = 50000

func newAuthCache() *authCache {
	return &authCache{epoch: -1, subjects: map[[32]byte]*authz.Subject{}, orgs: map[string]cachedOrg{}}
}

// current reports whether a transaction that saw epoch may use the cache, moving the cache
// forward (and dropping everything) when epoch is newer than the cache's. An older epoch
// leaves the cache alone: its transaction is a snapshot from before a change that a later
// request has already seen. c.mu must be held.
func (c *authCache) current(epoch int64) bool {
	if epoch > c.epoch || len(c.subjects) > maxCached || len(c.orgs) > maxCached {
		if epoch > c.epoch {
			c.epoch = epoch
		}
		c.subjects = map[[32]byte]*authz.Subject{}
		c.orgs = map[string]cachedOrg{}
	}
	return epoch == c.epoch
}

// subject returns the subject of a token digest for a transaction that saw epoch: cached,
// or loaded (by that transaction) and cached while epoch is the cache's epoch. Cached
// subjects are shared: callers must not modify them.
func (c *authCache) subject(epoch int64, d [32]byte, load func() (*authz.Subject, error)) (*authz.Subject, error) {
	c.mu.Lock()
	use := c.current(epoch)
	sub, ok := c.subjects[d]
	c.mu.Unlock()
	if use && ok {
		return sub, nil
	}
	sub, err := load()
	if err != nil || !use {
		return sub, err
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.subjects[d] = sub
	}
	c.mu.Unlock()
	return sub, nil
}

func subjectKey(sub *authz.Subject) string {
	switch {
	case sub.Kind == authz.UserKind:
		return "u" + strconv.FormatInt(sub.User.ID, 10)
	case sub.Token != nil:
		return "t" + sub.Token.ID
	case sub.Update != nil:
		return "l" // lease subjects have no facts
	case sub.Deployment != nil:
		// A deployment credential has no facts of its own (its run decides), only those of
		// the principal it acts for (environment reads and opens).
		k := "d"
		if sub.ActsFor != nil && sub.ActsFor.Deployment == nil {
			k += subjectKey(sub.ActsFor)
		}
		if sub.Editor != nil && sub.Editor.Deployment == nil {
			k += "/" + subjectKey(sub.Editor)
		}
		return k
	case sub.Pool != nil:
		return "r"
	}
	return "a"
}

// orgFacts returns the organization named name and the subject's facts in it, for a
// transaction that saw epoch (cached under the same rule as subject).
func (c *authCache) orgFacts(epoch int64, name string, sub *authz.Subject, load func() (*gatehouse.Org, authz.Facts, error)) (*gatehouse.Org, authz.Facts, error) {
	key := strings.ToLower(name) + "\x00" + subjectKey(sub)
	c.mu.Lock()
	use := c.current(epoch)
	co, ok := c.orgs[key]
	c.mu.Unlock()
	if use && ok {
		return co.org, co.facts, nil
	}
	org, f, err := load()
	if err != nil || !use {
		return org, f, err
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.orgs[key] = cachedOrg{org: org, facts: f}
	}
	c.mu.Unlock()
	return org, f, nil
}
