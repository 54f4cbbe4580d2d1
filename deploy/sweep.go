package deploy

import (
	"context"
	"time"
)

// The dead-runner sweep. A run whose runner stopped heartbeating is failed when its lease
// runs out: lazily, when a runner next asks for work or someone reads the run, and by this
// sweep, every Options.SweepInterval, so that the run ends (its credential with it, its
// deployment:end audit event, its deployment_failed webhook event, its commit status and
// pull request comment) and the stack's next queued run becomes leasable within a bounded
// time even when nothing else happens.
//
// Several processes may sweep one database: ExpireDeploymentLeases ends each run with a
// conditional update on its lease (status running, lease passed), so exactly one
// transaction ends a given run, and only that one records its events and reports it.
//
// An expired run is failed, never queued again: Gatehouse cannot tell whether the lost
// runner already ran the settings' pre-run commands or the pulumi operation (or is still
// running them on the far side of a partition), and a retry could do those twice.

// Start starts the sweep (every Options.SweepInterval); Close stops it.
func (s *Service) Start() {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	s.sweep.Start(s.opts.SweepInterval, func() {
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		if _, err := s.Sweep(ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("deploy: sweeping runs of dead runners failed", "err", err)
		}
	})
}

// Sweep fails the running runs whose lease ran out (their runner died) and returns how
// many this call ended (another process may have ended others).
func (s *Service) Sweep(ctx context.Context) (int, error) {
	return s.expire(ctx)
}

// Close stops the sweep and waits for the VCS reports in flight (those still retrying are
// abandoned).
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.sweep.Stop()
	s.cancel()
	s.reports.Wait()
}
