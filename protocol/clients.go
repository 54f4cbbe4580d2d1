package protocol

import (
	"sync"
	"time"
)

// clientTTL is how long a client's measured gap is remembered.
const clientTTL = 10 * time.Minute

// Clients remembers, per client address, the shortest response-to-next-request gap seen on
// any of its connections lately: a request that opens a connection has no gap of its own
// (the CLI's pool keeps two idle connections, and opens more when it sends several requests
// at once). It is written only when a connection's shortest gap shrinks, so its cost is not
// per request.
type Clients struct {
	mu    sync.Mutex
	gaps  map[string]clientGap
	swept time.Time
}

type clientGap struct {
	gap time.Duration
	at  time.Time
}

// NewClients returns an empty memory.
func NewClients() *Clients { return &Clients{gaps: map[string]clientGap{}} }

// Observe records a gap measured for the client at now.
func (c *Clients) Observe(client string, gap time.Duration, now time.Time) {
	if gap <= 0 || client == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > time.Minute {
		c.swept = now
		for k, v := range c.gaps {
			if now.Sub(v.at) > clientTTL {
				delete(c.gaps, k)
			}
		}
	}
	old, ok := c.gaps[client]
	if !ok || gap <= old.gap || now.Sub(old.at) > clientTTL {
		c.gaps[client] = clientGap{gap: gap, at: now}
	}
}

// Gap returns the client's remembered gap (0: none lately).
func (c *Clients) Gap(client string, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gaps[client]
	if !ok || now.Sub(g.at) > clientTTL {
		return 0
	}
	return g.gap
}
