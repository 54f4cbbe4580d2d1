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

// sync drops everything when the store's epoch moved.
func (c *authCache) sync(epoch int64) {
	c.mu.Lock()
	if epoch != c.epoch || len(c.subjects) > maxCached || len(c.orgs) > maxCached {
		c.epoch = epoch
		c.subjects = map[[32]byte]*authz.Subject{}
		c.orgs = map[string]cachedOrg{}
	}
	c.mu.Unlock()
}

// subject returns the cached subject of a token digest, or loads and caches it. Cached
// subjects are shared: callers must not modify them.
func (c *authCache) subject(d [32]byte, load func() (*authz.Subject, error)) (*authz.Subject, error) {
	c.mu.Lock()
	sub, ok := c.subjects[d]
	epoch := c.epoch
	c.mu.Unlock()
	if ok {
		return sub, nil
	}
	sub, err := load()
	if err != nil {
		return nil, err
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
	}
	return "a"
}

// orgFacts returns the organization named name and the subject's facts in it.
func (c *authCache) orgFacts(name string, sub *authz.Subject, load func() (*gatehouse.Org, authz.Facts, error)) (*gatehouse.Org, authz.Facts, error) {
	key := strings.ToLower(name) + "\x00" + subjectKey(sub)
	c.mu.Lock()
	co, ok := c.orgs[key]
	epoch := c.epoch
	c.mu.Unlock()
	if ok {
		return co.org, co.facts, nil
	}
	org, f, err := load()
	if err != nil {
		return nil, f, err
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.orgs[key] = cachedOrg{org: org, facts: f}
	}
	c.mu.Unlock()
	return org, f, nil
}
