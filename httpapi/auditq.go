package httpapi

import (
	"context"
	"sync"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// auditQueue appends audit events that go with no other change (reads that are audited,
// denials, failures) with group commit: one goroutine takes every event waiting and
// appends them in one transaction, while callers wait for that transaction to commit, so
// an audited response is still only sent once its record is durable. Under load many
// events share a commit; alone, an event waits for nothing but its own.
type auditQueue struct {
	store gatehouse.Store
	in    chan auditReq
	once  sync.Once
	// failures counts events that could not be written (gatehouse_audit_write_failures_total).
	failures interface{ Add(float64) }
}

type auditReq struct {
	ev   *gatehouse.AuditEvent
	done chan error
}

const auditBatchMax = 256

func newAuditQueue(store gatehouse.Store) *auditQueue {
	q := &auditQueue{store: store, in: make(chan auditReq, 4096)}
	go q.loop()
	return q
}

// append records ev and returns once it is committed (or failed).
func (q *auditQueue) append(ctx context.Context, ev *gatehouse.AuditEvent) error {
	r := auditReq{ev: ev, done: make(chan error, 1)}
	select {
	case q.in <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the event is written whatever the caller does: wait for the outcome.
	return <-r.done
}

func (q *auditQueue) loop() {
	for first := range q.in {
		batch := []auditReq{first}
	drain:
		for len(batch) < auditBatchMax {
			select {
			case r, ok := <-q.in:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		err := q.store.Update(context.Background(), func(tx gatehouse.Tx) error {
			for _, r := range batch {
				ev := *r.ev // a retried transaction starts from the caller's event again
				if err := tx.AppendAudit(&ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && q.failures != nil {
			q.failures.Add(float64(len(batch)))
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (q *auditQueue) close() { q.once.Do(func() { close(q.in) }) }
