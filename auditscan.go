package gatehouse

import (
	"context"
	"iter"
)

// ScanAudit iterates the audit events matching f in ascending sequence order, reading one
// page (f.Limit events, 2,000 when unset) per read transaction, so that a verification or an
// export of any size streams in bounded memory.
func ScanAudit(ctx context.Context, s Store, f AuditFilter) iter.Seq2[AuditEvent, error] {
	f.Ascending = true
	if f.Limit <= 0 {
		f.Limit = 2000
	}
	return func(yield func(AuditEvent, error) bool) {
		for {
			var evs []AuditEvent
			err := s.View(ctx, func(tx Tx) error {
				var err error
				evs, err = tx.ListAudit(f)
				return err
			})
			if err != nil {
				yield(AuditEvent{}, err)
				return
			}
			for i := range evs {
				if !yield(evs[i], nil) {
					return
				}
			}
			if len(evs) < f.Limit {
				return
			}
			f.AfterSeq = evs[len(evs)-1].Seq
		}
	}
}
