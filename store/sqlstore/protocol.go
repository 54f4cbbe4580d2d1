package sqlstore

import (
	"math"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// State protocol choices and stack profiles (migrations 0025 and 0033).

func milli(f float64) int64 { return int64(math.Round(f * 1000)) }

func (t *tx) GetProtocolProfile(stackID int64) (*gatehouse.ProtocolProfile, error) {
	var p gatehouse.ProtocolProfile
	var par, period, mod int64
	err := t.queryRow(`SELECT updates, parallelism_milli, source, batch_period_us, modified FROM stack_protocol_profiles WHERE stack_id = ?`, stackID).
		Scan(&p.Updates, &par, &p.Source, &period, &mod)
	if err != nil {
		return nil, one(err, "the stack has no protocol profile")
	}
	p.Parallelism, p.BatchPeriod, p.Modified = float64(par)/1000, time.Duration(period)*time.Microsecond, fromNS(mod)
	return &p, nil
}

func (t *tx) PutProtocolProfile(stackID int64, p *gatehouse.ProtocolProfile) error {
	var n int
	if err := t.queryRow(`SELECT COUNT(*) FROM stacks WHERE id = ?`, stackID).Scan(&n); err != nil {
		return dbErr(err)
	}
	if n == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	_, err := t.exec(`INSERT INTO stack_protocol_profiles (stack_id, updates, parallelism_milli, source, batch_period_us, modified) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (stack_id) DO UPDATE SET updates = excluded.updates, parallelism_milli = excluded.parallelism_milli,
		source = excluded.source, batch_period_us = excluded.batch_period_us, modified = excluded.modified`,
		stackID, p.Updates, milli(p.Parallelism), validText(p.Source), p.BatchPeriod.Microseconds(), ns(t.now))
	return err
}

func (t *tx) SetUpdateProtocol(updateID string, p *gatehouse.UpdateProtocol) error {
	var n int
	if err := t.queryRow(`SELECT COUNT(*) FROM updates WHERE id = ?`, updateID).Scan(&n); err != nil {
		return dbErr(err)
	}
	if n == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "update not found")
	}
	_, err := t.exec(`INSERT INTO update_protocols (update_id, protocol, reason, rtt_us, rtt_source, parallelism_milli, resources, batch_period_us, client_batch_period)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (update_id) DO UPDATE SET protocol = excluded.protocol, reason = excluded.reason, rtt_us = excluded.rtt_us,
		rtt_source = excluded.rtt_source, parallelism_milli = excluded.parallelism_milli, resources = excluded.resources,
		batch_period_us = excluded.batch_period_us, client_batch_period = excluded.client_batch_period`,
		updateID, validText(p.Protocol), validText(p.Reason), p.RTT.Microseconds(), validText(p.RTTSource), milli(p.Parallelism), p.Resources,
		p.BatchPeriodMicros, b2i(p.ClientBatchPeriod))
	return err
}

func (t *tx) GetUpdateProtocol(updateID string) (*gatehouse.UpdateProtocol, error) {
	var p gatehouse.UpdateProtocol
	var rtt, par, client int64
	err := t.queryRow(`SELECT protocol, reason, rtt_us, rtt_source, parallelism_milli, resources, batch_period_us, client_batch_period FROM update_protocols WHERE update_id = ?`, updateID).
		Scan(&p.Protocol, &p.Reason, &rtt, &p.RTTSource, &par, &p.Resources, &p.BatchPeriodMicros, &client)
	if err != nil {
		return nil, one(err, "no protocol was recorded for the update")
	}
	p.ClientBatchPeriod = client != 0
	p.RTT, p.RTTMicros, p.Parallelism = time.Duration(rtt)*time.Microsecond, rtt, float64(par)/1000
	return &p, nil
}
