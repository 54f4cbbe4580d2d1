package sqlstore

import "time"

// SetClock replaces the clock each transaction reads its Now from, once at its start (tests
// use a settable clock to reach lease expiries). Call it before the store is used
// concurrently: the clock itself may be read from many goroutines.
func (db *DB) SetClock(now func() time.Time) { db.Clock = now }
