package storetest

import (
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testProtocol: a stack's protocol profile and the protocol recorded per update (migrations
// 0025, 0033): put/get round trips, replacement, ENOTFOUND for what does not exist, and both go
// with their stack.
func testProtocol(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "dev", nil)
	other := e.stack(acme.ID, "web", "other", nil)
	err := e.try(func(tx gatehouse.Tx) error { _, err := tx.GetProtocolProfile(s.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetProtocolProfile of a new stack")
	getProfile := func(id int64) *gatehouse.ProtocolProfile {
		var p *gatehouse.ProtocolProfile
		e.view(func(tx gatehouse.Tx) (err error) { p, err = tx.GetProtocolProfile(id); return err })
		return p
	}
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutProtocolProfile(s.ID, &gatehouse.ProtocolProfile{Updates: 1, Parallelism: 2.5, Source: "journal_batches"})
	})
	if p := getProfile(s.ID); p.Updates != 1 || p.Parallelism != 2.5 || p.Source != "journal_batches" || p.Modified.IsZero() {
		t.Errorf("GetProtocolProfile = %+v", *p)
	}
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutProtocolProfile(s.ID, &gatehouse.ProtocolProfile{Updates: 2, Parallelism: 1.234, Source: "engine_events", BatchPeriod: 1500 * time.Microsecond})
	})
	if p := getProfile(s.ID); p.Updates != 2 || p.Parallelism != 1.234 || p.Source != "engine_events" || p.BatchPeriod != 1500*time.Microsecond {
		t.Errorf("GetProtocolProfile after a second put = %+v", *p)
	}
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetProtocolProfile(other.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetProtocolProfile of another stack")
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.PutProtocolProfile(other.ID+1000, &gatehouse.ProtocolProfile{Updates: 1, Parallelism: 1})
	})
	wantCode(t, err, gatehouse.ENOTFOUND, "PutProtocolProfile of an unknown stack")

	id := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetUpdateProtocol(id); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetUpdateProtocol before one is set")
	want := gatehouse.UpdateProtocol{Protocol: "journal", Reason: "faster_journal", RTT: 41500 * time.Microsecond,
		RTTMicros: 41500, RTTSource: "tcp_info", Parallelism: 3.5, Resources: 1000, BatchPeriodMicros: 2000, ClientBatchPeriod: true}
	e.update(func(tx gatehouse.Tx) error { return tx.SetUpdateProtocol(id, &want) })
	var got *gatehouse.UpdateProtocol
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetUpdateProtocol(id); return err })
	if *got != want {
		t.Errorf("GetUpdateProtocol = %+v, want %+v", *got, want)
	}
	// A second record replaces the first, the client's batch period with it.
	want2 := want
	want2.Protocol, want2.Reason, want2.BatchPeriodMicros, want2.ClientBatchPeriod = "checkpoint", "faster_checkpoints", 50000, false
	e.update(func(tx gatehouse.Tx) error { return tx.SetUpdateProtocol(id, &want2) })
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetUpdateProtocol(id); return err })
	if *got != want2 {
		t.Errorf("GetUpdateProtocol after a second set = %+v, want %+v", *got, want2)
	}
	err = e.try(func(tx gatehouse.Tx) error { return tx.SetUpdateProtocol("no-such-update", &want) })
	wantCode(t, err, gatehouse.ENOTFOUND, "SetUpdateProtocol of an unknown update")

	// Both go with the stack.
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(s.ID) })
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetProtocolProfile(s.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetProtocolProfile of a deleted stack")
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetUpdateProtocol(id); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetUpdateProtocol of a deleted stack's update")
}
