package httpapi_test

import (
	"context"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/token"
)

// matrixDeploymentID is the queued deployment of proj/prod in the matrix world.
const matrixDeploymentID = "00000000-0000-4000-8000-00000000d001"

// addDeployments gives proj/prod deployment settings and one queued deployment.
func (w *world) addDeployments(t *testing.T) {
	must(t, w.e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "prod") + "/deployments/settings",
		Body: map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "https://git.example.com/acme/infra.git", "branch": "main"}}}}, nil))
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		st, err := tx.GetStack(1, "proj", "prod")
		if err != nil {
			return err
		}
		return tx.CreateDeployment(&gatehouse.Deployment{ID: matrixDeploymentID, OrgID: 1, StackID: st.ID, Operation: "update", Request: []byte(`{}`), Initiator: "matrix"})
	}))
}

// pool creates a runner pool of acme to delete and returns its ID.
func (w *world) pool(t *testing.T) string {
	v, err := token.New(token.Runner)
	must(t, err)
	p := &gatehouse.DeployPool{OrgID: 1, Name: "victim-" + v[len(v)-8:], Digest: token.Digest(v)}
	w.wrote = true
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error { return tx.CreateDeployPool(p) }))
	return p.ID
}

// addDeploymentCreds starts two deployment runs in the store and keeps their credentials
// as subjects: "deploy", an update of proj/prod acting for the t-write team token
// (teamtok: write on penv, a pipeline credential), and "deployp", an update of proj/other
// acting for the person treadd (open on every environment of ESC project proj, but a
// person: penv is protected).
func (w *world) addDeploymentCreds(t *testing.T) {
	for _, c := range []struct{ subject, stack, actsFor string }{{"deploy", "prod", "teamtok"}, {"deployp", "other", "treadd"}} {
		v, err := token.New(token.Deploy)
		must(t, err)
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			st, err := tx.GetStack(1, "proj", c.stack)
			if err != nil {
				return err
			}
			tk, err := tx.GetTokenByDigest(token.Digest(w.tokens[c.actsFor]))
			if err != nil {
				return err
			}
			// The principal is also the settings' editor (a webhook's run, or an editor's
			// own trigger): the intersection with another editor is tested elsewhere
			// (TestDeploymentRunNeedsTriggerAndEditor).
			p := gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: tk.ID}
			d := &gatehouse.Deployment{OrgID: 1, StackID: st.ID, Operation: "update", Request: []byte(`{}`), Initiator: "matrix",
				ActsFor: p, Editor: p, PoolID: "matrix-" + c.subject}
			if err := tx.CreateDeployment(d); err != nil {
				return err
			}
			until := tx.Now().Add(30 * 24 * time.Hour)
			got, err := tx.LeaseDeployment(1, d.PoolID, "matrix", "lease-"+c.subject, until, token.Digest(v), until)
			if err == nil && got.ID != d.ID {
				t.Fatalf("leased %s, want %s", got.ID, d.ID)
			}
			return err
		}))
		w.tokens[c.subject] = v
	}
}
