package sqlstore

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// The posture tables (migration 0023): the token usage inventory, anomalies, address
// allow-lists and ranges, posture settings.

func (t *tx) GetTokenUsage(tokenID string) (*gatehouse.TokenUsage, error) {
	u := &gatehouse.TokenUsage{TokenID: tokenID, Hours: map[int64][2]int64{}}
	var first, last, mask int64
	err := t.queryRow(`SELECT org_id, first_seen, last_seen, requests, denied, hours_mask, overflow_clients, overflow_requests, overflow_targets
		FROM token_usage WHERE token_id = ?`, tokenID).Scan(&u.OrgID, &first, &last, &u.Requests, &u.Denied, &mask, &u.OverflowClients, &u.OverflowRequests, &u.OverflowTargets)
	if err != nil {
		if err := one(err, ""); err != nil && !isNotFound(err) {
			return nil, err
		}
		return u, nil
	}
	u.FirstSeen, u.LastSeen, u.HoursMask = fromNS(first), fromNS(last), uint32(mask)
	scanClient := func(sc scanner) (*gatehouse.TokenClient, error) {
		var c gatehouse.TokenClient
		var f, l int64
		if err := sc.Scan(&c.IP, &c.Agent, &c.CI, &c.OrgID, &f, &l, &c.Requests, &c.Denied); err != nil {
			return nil, err
		}
		c.FirstSeen, c.LastSeen = fromNS(f), fromNS(l)
		return &c, nil
	}
	u.Clients, err = queryAll(t, scanClient, `SELECT ip, agent, ci, org_id, first_seen, last_seen, requests, denied FROM token_usage_clients WHERE token_id = ? ORDER BY last_seen DESC, ip, agent, ci`, tokenID)
	if err != nil {
		return nil, err
	}
	scanTarget := func(sc scanner) (*gatehouse.TokenTarget, error) {
		var g gatehouse.TokenTarget
		var f, l int64
		if err := sc.Scan(&g.Kind, &g.Name, &f, &l, &g.Requests); err != nil {
			return nil, err
		}
		g.FirstSeen, g.LastSeen = fromNS(f), fromNS(l)
		return &g, nil
	}
	u.Targets, err = queryAll(t, scanTarget, `SELECT kind, name, first_seen, last_seen, requests FROM token_usage_targets WHERE token_id = ? ORDER BY last_seen DESC, kind, name`, tokenID)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(`SELECT hour, requests, denied FROM token_usage_hours WHERE token_id = ?`, tokenID)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var h, r, d int64
		if err := rows.Scan(&h, &r, &d); err != nil {
			return nil, dbErr(err)
		}
		u.Hours[h] = [2]int64{r, d}
	}
	return u, dbErr(rows.Err())
}

// minMax are the upsert expressions that keep the earliest first_seen and the latest
// last_seen whatever order batches arrive in (processes' clocks differ).
const minMax = `first_seen = CASE WHEN excluded.first_seen < %[1]s.first_seen THEN excluded.first_seen ELSE %[1]s.first_seen END,
	last_seen = CASE WHEN excluded.last_seen > %[1]s.last_seen THEN excluded.last_seen ELSE %[1]s.last_seen END`

func minMaxFor(table string) string { return strings.ReplaceAll(minMax, "%[1]s", table) }

func (t *tx) RecordTokenUsage(deltas []gatehouse.UsageDelta, limits gatehouse.UsageLimits) error {
	if limits.MaxClients <= 0 {
		limits.MaxClients = 50
	}
	if limits.MaxTargets <= 0 {
		limits.MaxTargets = 100
	}
	// The summary and the hourly counts are merged per token (one statement each per token
	// and hour, however many clients the batch has).
	type sum struct {
		org                     int64
		first, last             time.Time
		requests, denied, hours int64
		hourCounts              map[int64][2]int64
	}
	sums := map[string]*sum{}
	var order []string
	for _, d := range deltas {
		if d.Requests <= 0 {
			continue
		}
		x := sums[d.TokenID]
		if x == nil {
			x = &sum{org: d.OrgID, first: d.First, last: d.Last, hourCounts: map[int64][2]int64{}}
			sums[d.TokenID] = x
			order = append(order, d.TokenID)
		}
		if d.First.Before(x.first) {
			x.first = d.First
		}
		if d.Last.After(x.last) {
			x.last = d.Last
		}
		x.requests += d.Requests
		x.denied += d.Denied
		x.hours |= int64(d.Hours)
		for h, c := range d.HourCounts {
			v := x.hourCounts[h]
			x.hourCounts[h] = [2]int64{v[0] + c[0], v[1] + c[1]}
		}
	}
	for _, id := range order {
		x := sums[id]
		if _, err := t.exec(`INSERT INTO token_usage (token_id, org_id, first_seen, last_seen, requests, denied, hours_mask) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (token_id) DO UPDATE SET `+minMaxFor("token_usage")+`,
			requests = token_usage.requests + excluded.requests, denied = token_usage.denied + excluded.denied,
			hours_mask = token_usage.hours_mask | excluded.hours_mask`,
			id, x.org, ns(x.first), ns(x.last), x.requests, x.denied, x.hours); err != nil {
			return dbErr(err)
		}
		hours := make([]int64, 0, len(x.hourCounts))
		for h := range x.hourCounts {
			hours = append(hours, h)
		}
		slices.Sort(hours) // one lock order for every process (PostgreSQL)
		for _, h := range hours {
			c := x.hourCounts[h]
			if _, err := t.exec(`INSERT INTO token_usage_hours (token_id, hour, requests, denied) VALUES (?, ?, ?, ?)
				ON CONFLICT (token_id, hour) DO UPDATE SET requests = token_usage_hours.requests + excluded.requests, denied = token_usage_hours.denied + excluded.denied`,
				id, h, c[0], c[1]); err != nil {
				return dbErr(err)
			}
		}
	}
	targets := map[[2]string]*gatehouse.UsageDelta{}
	var torder [][2]string
	clients := map[[4]string]*gatehouse.UsageDelta{}
	var corder [][4]string
	for _, d := range deltas {
		if d.Requests <= 0 {
			continue
		}
		ck := [4]string{d.TokenID, d.IP, d.Agent, d.CI}
		c := clients[ck]
		if c == nil {
			dd := d
			dd.Requests, dd.Denied, dd.Target, dd.HourCounts = 0, 0, "", nil
			c = &dd
			clients[ck] = c
			corder = append(corder, ck)
		}
		if d.First.Before(c.First) {
			c.First = d.First
		}
		if d.Last.After(c.Last) {
			c.Last = d.Last
		}
		c.Requests += d.Requests
		c.Denied += d.Denied
		if _, name, ok := strings.Cut(d.Target, ":"); ok && name != "" {
			k := [2]string{d.TokenID, d.Target}
			g := targets[k]
			if g == nil {
				g = &gatehouse.UsageDelta{TokenID: d.TokenID, Target: d.Target, First: d.First, Last: d.Last}
				targets[k] = g
				torder = append(torder, k)
			}
			if d.First.Before(g.First) {
				g.First = d.First
			}
			if d.Last.After(g.Last) {
				g.Last = d.Last
			}
			g.Requests += d.Requests
		}
	}
	// Clients: one or two statements per distinct client.
	for _, ck := range corder {
		d := clients[ck]
		ip, agent, ci := validText(d.IP), validText(d.Agent), validText(d.CI)
		// A known client is updated; a new one is inserted only while the token has fewer
		// than MaxClients (the count and the insert are one statement).
		r, err := t.exec(`UPDATE token_usage_clients SET org_id = ?, requests = requests + ?, denied = denied + ?,
			first_seen = CASE WHEN ? < first_seen THEN ? ELSE first_seen END, last_seen = CASE WHEN ? > last_seen THEN ? ELSE last_seen END
			WHERE token_id = ? AND ip = ? AND agent = ? AND ci = ?`,
			d.OrgID, d.Requests, d.Denied, ns(d.First), ns(d.First), ns(d.Last), ns(d.Last), d.TokenID, ip, agent, ci)
		if err != nil {
			return dbErr(err)
		}
		if affected(r) == 0 {
			r, err = t.exec(`INSERT INTO token_usage_clients (token_id, ip, agent, ci, org_id, first_seen, last_seen, requests, denied)
				SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT)
				WHERE (SELECT COUNT(*) FROM token_usage_clients WHERE token_id = ?) < ?
				ON CONFLICT (token_id, ip, agent, ci) DO NOTHING`,
				d.TokenID, ip, agent, ci, d.OrgID, ns(d.First), ns(d.Last), d.Requests, d.Denied, d.TokenID, limits.MaxClients)
			if err != nil {
				return dbErr(err)
			}
			if affected(r) == 0 {
				if _, err := t.exec(`UPDATE token_usage SET overflow_clients = overflow_clients + 1, overflow_requests = overflow_requests + ? WHERE token_id = ?`, d.Requests, d.TokenID); err != nil {
					return dbErr(err)
				}
			}
		}
	}
	// Targets: one statement per token and target, however many clients touched it.
	for _, k := range torder {
		d := targets[k]
		if kind, name, ok := strings.Cut(d.Target, ":"); ok {
			name = validText(name)
			r, err := t.exec(`UPDATE token_usage_targets SET requests = requests + ?,
				first_seen = CASE WHEN ? < first_seen THEN ? ELSE first_seen END, last_seen = CASE WHEN ? > last_seen THEN ? ELSE last_seen END
				WHERE token_id = ? AND kind = ? AND name = ?`,
				d.Requests, ns(d.First), ns(d.First), ns(d.Last), ns(d.Last), d.TokenID, kind, name)
			if err != nil {
				return dbErr(err)
			}
			if affected(r) == 0 {
				r, err = t.exec(`INSERT INTO token_usage_targets (token_id, kind, name, first_seen, last_seen, requests)
					SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT)
					WHERE (SELECT COUNT(*) FROM token_usage_targets WHERE token_id = ?) < ?
					ON CONFLICT (token_id, kind, name) DO NOTHING`,
					d.TokenID, kind, name, ns(d.First), ns(d.Last), d.Requests, d.TokenID, limits.MaxTargets)
				if err != nil {
					return dbErr(err)
				}
				if affected(r) == 0 {
					if _, err := t.exec(`UPDATE token_usage SET overflow_targets = overflow_targets + 1 WHERE token_id = ?`, d.TokenID); err != nil {
						return dbErr(err)
					}
				}
			}
		}
	}
	return nil
}

func (t *tx) PruneTokenUsage(before, hoursBefore time.Time) (int64, error) {
	var n int64
	hour := hoursBefore.Unix() / 3600
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM token_usage_clients WHERE last_seen < ?`, []any{ns(before)}},
		{`DELETE FROM token_usage_targets WHERE last_seen < ?`, []any{ns(before)}},
		{`DELETE FROM token_usage_hours WHERE hour < ?`, []any{hour}},
		{`DELETE FROM posture_anomalies WHERE at < ?`, []any{ns(before)}},
		{`DELETE FROM token_usage WHERE NOT EXISTS (SELECT 1 FROM tokens WHERE tokens.id = token_usage.token_id)`, nil},
		{`DELETE FROM token_usage_clients WHERE NOT EXISTS (SELECT 1 FROM tokens WHERE tokens.id = token_usage_clients.token_id)`, nil},
		{`DELETE FROM token_usage_targets WHERE NOT EXISTS (SELECT 1 FROM tokens WHERE tokens.id = token_usage_targets.token_id)`, nil},
		{`DELETE FROM token_usage_hours WHERE NOT EXISTS (SELECT 1 FROM tokens WHERE tokens.id = token_usage_hours.token_id)`, nil},
	} {
		r, err := t.exec(q.sql, q.args...)
		if err != nil {
			return n, dbErr(err)
		}
		n += affected(r)
	}
	return n, nil
}

func (t *tx) UsageInventoryStats() (gatehouse.UsageInventoryStats, error) {
	var s gatehouse.UsageInventoryStats
	err := t.queryRow(`SELECT (SELECT COUNT(*) FROM token_usage), (SELECT COUNT(*) FROM token_usage_clients), (SELECT COUNT(*) FROM token_usage_targets),
		(SELECT COUNT(*) FROM token_usage_hours), (SELECT COUNT(*) FROM posture_anomalies)`).Scan(&s.Tokens, &s.Clients, &s.Targets, &s.Hours, &s.Anomalies)
	return s, dbErr(err)
}

func (t *tx) RecordAnomaly(a *gatehouse.Anomaly) (bool, error) {
	if a.At.IsZero() {
		a.At = t.now
	}
	var id int64
	err := t.queryRow(`INSERT INTO posture_anomalies (org_id, token_id, kind, window_key, at, detail, ip, agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (token_id, kind, window_key) DO NOTHING RETURNING id`,
		a.OrgID, a.TokenID, a.Kind, a.Window, ns(a.At), validText(a.Detail), validText(a.IP), validText(a.Agent)).Scan(&id)
	if err != nil {
		if err := one(err, ""); err != nil && isNotFound(err) {
			return false, nil
		}
		return false, dbErr(err)
	}
	a.ID = id
	return true, nil
}

func (t *tx) ListAnomalies(orgID int64, since time.Time, limit int) ([]gatehouse.Anomaly, error) {
	if limit <= 0 {
		limit = 1000
	}
	scan := func(sc scanner) (*gatehouse.Anomaly, error) {
		var a gatehouse.Anomaly
		var at int64
		if err := sc.Scan(&a.ID, &a.OrgID, &a.TokenID, &a.Kind, &a.Window, &at, &a.Detail, &a.IP, &a.Agent); err != nil {
			return nil, err
		}
		a.At = fromNS(at)
		return &a, nil
	}
	return queryAll(t, scan, `SELECT id, org_id, token_id, kind, window_key, at, detail, ip, agent FROM posture_anomalies WHERE org_id = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?`,
		orgID, ns(since), limit)
}

func scanAllowList(s interface{ Scan(...any) error }) (*gatehouse.AllowList, error) {
	var l gatehouse.AllowList
	var entries string
	var mod int64
	if err := s.Scan(&l.OrgID, &l.TokenID, &entries, &l.ModifiedBy, &mod); err != nil {
		return nil, err
	}
	l.Modified = fromNS(mod)
	if err := json.Unmarshal([]byte(entries), &l.Entries); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "corrupt allow-list")
	}
	return &l, nil
}

func (t *tx) ListAllowLists(orgID int64) ([]gatehouse.AllowList, error) {
	return queryAll(t, scanAllowList, `SELECT org_id, token_id, entries, modified_by, modified FROM address_allowlists WHERE org_id = ? ORDER BY token_id`, orgID)
}

func (t *tx) GetAllowList(orgID int64, tokenID string) (*gatehouse.AllowList, error) {
	l, err := scanAllowList(t.queryRow(`SELECT org_id, token_id, entries, modified_by, modified FROM address_allowlists WHERE org_id = ? AND token_id = ?`, orgID, tokenID))
	if err != nil {
		return nil, one(err, "no allow-list")
	}
	return l, nil
}

func (t *tx) PutAllowList(l *gatehouse.AllowList) error {
	if err := t.bump(); err != nil {
		return err
	}
	if len(l.Entries) == 0 {
		_, err := t.exec(`DELETE FROM address_allowlists WHERE org_id = ? AND token_id = ?`, l.OrgID, l.TokenID)
		return dbErr(err)
	}
	b, _ := json.Marshal(l.Entries)
	l.Modified = t.now
	_, err := t.exec(`INSERT INTO address_allowlists (org_id, token_id, entries, modified_by, modified) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (org_id, token_id) DO UPDATE SET entries = excluded.entries, modified_by = excluded.modified_by, modified = excluded.modified`,
		l.OrgID, l.TokenID, string(b), validText(l.ModifiedBy), ns(l.Modified))
	return dbErr(err)
}

func (t *tx) ListAddressRanges(orgID int64) ([]gatehouse.AddressRange, error) {
	scan := func(sc scanner) (*gatehouse.AddressRange, error) {
		var r gatehouse.AddressRange
		var cidrs string
		var mod int64
		if err := sc.Scan(&r.OrgID, &r.Name, &cidrs, &r.ModifiedBy, &mod); err != nil {
			return nil, err
		}
		r.Modified = fromNS(mod)
		if err := json.Unmarshal([]byte(cidrs), &r.CIDRs); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "corrupt address range")
		}
		return &r, nil
	}
	return queryAll(t, scan, `SELECT org_id, name, cidrs, modified_by, modified FROM address_ranges WHERE org_id = ? ORDER BY name`, orgID)
}

func (t *tx) PutAddressRange(r *gatehouse.AddressRange) error {
	if err := t.bump(); err != nil {
		return err
	}
	b, _ := json.Marshal(r.CIDRs)
	r.Modified = t.now
	_, err := t.exec(`INSERT INTO address_ranges (org_id, name, cidrs, modified_by, modified) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (org_id, name) DO UPDATE SET cidrs = excluded.cidrs, modified_by = excluded.modified_by, modified = excluded.modified`,
		r.OrgID, validText(r.Name), string(b), validText(r.ModifiedBy), ns(r.Modified))
	return dbErr(err)
}

func (t *tx) DeleteAddressRange(orgID int64, name string) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM address_ranges WHERE org_id = ? AND name = ?`, orgID, name)
	if err != nil {
		return dbErr(err)
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "address range '%s' not found", name)
	}
	return nil
}

func (t *tx) GetPostureSettings(orgID int64) ([]byte, error) {
	var s string
	err := t.queryRow(`SELECT settings FROM posture_settings WHERE org_id = ?`, orgID).Scan(&s)
	if err != nil {
		if err := one(err, ""); err != nil && !isNotFound(err) {
			return nil, err
		}
		return nil, nil
	}
	return []byte(s), nil
}

func (t *tx) PutPostureSettings(orgID int64, settings []byte) error {
	_, err := t.exec(`INSERT INTO posture_settings (org_id, settings, modified) VALUES (?, ?, ?)
		ON CONFLICT (org_id) DO UPDATE SET settings = excluded.settings, modified = excluded.modified`, orgID, string(settings), ns(t.now))
	return dbErr(err)
}
