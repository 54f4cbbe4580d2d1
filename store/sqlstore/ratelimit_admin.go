package sqlstore

import (
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func (t *tx) ListAuthFailures(window time.Duration, limit int) ([]gatehouse.AuthFailureCount, error) {
	if limit <= 0 {
		limit = 1000
	}
	scan := func(sc scanner) (*gatehouse.AuthFailureCount, error) {
		var c gatehouse.AuthFailureCount
		var count, start int64
		if err := sc.Scan(&c.Key, &count, &start); err != nil {
			return nil, err
		}
		c.Count, c.WindowStart = int(count), fromNS(start)
		return &c, nil
	}
	return queryAll(t, scan, `SELECT key, count, window_start FROM auth_failures WHERE window_start > ? ORDER BY count DESC, key LIMIT ?`, ns(t.now.Add(-window)), limit)
}

func (t *tx) ClearAuthFailures(keys ...string) (int64, error) {
	var n int64
	for _, k := range keys {
		r, err := t.exec(`DELETE FROM auth_failures WHERE key = ?`, k)
		if err != nil {
			return 0, dbErr(err)
		}
		n += affected(r)
	}
	// Always: a process may remember a refusal whose counter is gone already.
	if err := t.bump(); err != nil {
		return 0, err
	}
	return n, nil
}
