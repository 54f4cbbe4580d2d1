package deploy

import (
	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// event queues the deployment webhook event name (deployment_queued, _started,
// _succeeded, _failed) about d, of stack st (nil: looked up), in tx: the transaction of the
// status change it reports, so it is queued once, with the change, or not at all. The
// stack's and the organization's webhooks that select it receive it.
func (s *Service) event(tx gatehouse.Tx, d *gatehouse.Deployment, st *gatehouse.Stack, name string) error {
	if st == nil {
		var err error
		if st, err = tx.GetStackByID(d.StackID); err != nil {
			return err
		}
	}
	_, err := webhook.Enqueue(tx, &webhook.Event{Name: name, OrgID: d.OrgID, OrgName: st.OrgName, StackID: st.ID, Project: st.Project, Stack: st.Name,
		User: d.RequestedBy, DeploymentID: d.ID, Version: d.Version, Operation: d.Operation, Status: d.Status, DeploymentURL: s.ConsoleURL("", st, d)})
	return err
}

// endEvent queues the event of a run that just ended: deployment_succeeded, or
// deployment_failed (failed, cancelled, its runner lost). A skipped run (superseded by a
// newer one) ended without failing: deployment_succeeded, with status skipped.
func (s *Service) endEvent(tx gatehouse.Tx, d *gatehouse.Deployment, st *gatehouse.Stack) error {
	name := webhook.DeploymentSucceeded
	if d.Status == gatehouse.DeployFailed {
		name = webhook.DeploymentFailed
	}
	return s.event(tx, d, st, name)
}

// wake tells the webhook dispatcher that deliveries were queued.
func (s *Service) wake() {
	if s.opts.Wake != nil {
		s.opts.Wake()
	}
}
