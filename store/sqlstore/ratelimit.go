package sqlstore

import "time"

func (t *tx) RecordAuthFailure(key string, window time.Duration) (int, time.Time, error) {
	now := ns(t.now)
	stale := ns(t.now.Add(-window))
	var count, start int64
	err := t.queryRow(`INSERT INTO auth_failures (key, window_start, count) VALUES (?, ?, 1)
		ON CONFLICT (key) DO UPDATE SET
			count = CASE WHEN auth_failures.window_start <= ? THEN 1 ELSE auth_failures.count + 1 END,
			window_start = CASE WHEN auth_failures.window_start <= ? THEN ? ELSE auth_failures.window_start END
		RETURNING count, window_start`, key, now, stale, stale, now).Scan(&count, &start)
	if err != nil {
		return 0, time.Time{}, dbErr(err)
	}
	return int(count), fromNS(start), nil
}

func (t *tx) AuthFailures(key string, window time.Duration) (int, time.Time, error) {
	var count, start int64
	err := t.queryRow(`SELECT count, window_start FROM auth_failures WHERE key = ? AND window_start > ?`, key, ns(t.now.Add(-window))).Scan(&count, &start)
	if err != nil {
		if err := one(err, ""); err != nil && !isNotFound(err) {
			return 0, time.Time{}, err
		}
		return 0, time.Time{}, nil
	}
	return int(count), fromNS(start), nil
}

func (t *tx) PruneAuthFailures(window time.Duration) (int64, error) {
	r, err := t.exec(`DELETE FROM auth_failures WHERE window_start <= ?`, ns(t.now.Add(-window)))
	if err != nil {
		return 0, err
	}
	return affected(r), nil
}
