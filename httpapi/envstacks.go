package httpapi

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/esc"
)

// stackReader serves the pulumi-stacks provider (fn::open::pulumi-stacks) for one request:
// stacks of the request's organization, decided by authz.Decide for the CALLER (stack:read
// for the outputs, stack:decrypt for each secret output). The stacks read are recorded in
// the request's audit event.
type stackReader struct {
	rq   *Request
	mu   sync.Mutex
	read map[string]bool
}

var _ esc.StackReader = (*stackReader)(nil)

func (r *stackReader) stack(project, name string, action authz.Action) (*gatehouse.Stack, error) {
	rq := r.rq
	ref := project + "/" + name
	var st *gatehouse.Stack
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		st, err = tx.GetStack(rq.Org.ID, project, name)
		return err
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.EINVALID) {
		return nil, errors.New("stack not found")
	}
	if err != nil {
		return nil, errors.New("cannot load the stack")
	}
	d := authz.Decide(rq.Subject, action, authz.Resource{Org: rq.Org, Stack: st}, rq.facts)
	if !d.Allow {
		// The refusal is in the open's audit event (its reason says only that the
		// definition has errors).
		r.mu.Lock()
		rq.Detail("stackOutputsDenied", ref+" ("+string(action)+")")
		r.mu.Unlock()
	}
	switch {
	case d.Hide:
		return nil, errors.New("stack not found") // a stack the caller may not see reads as missing
	case !d.Allow:
		return nil, errors.New(string(action) + " denied: " + d.Reason)
	}
	r.mu.Lock()
	if r.read == nil {
		r.read = map[string]bool{}
	}
	r.read[ref] = true
	refs := make([]string, 0, len(r.read))
	for k := range r.read {
		refs = append(refs, k)
	}
	sort.Strings(refs)
	rq.Detail("stackOutputs", strings.Join(refs, ","))
	r.mu.Unlock()
	return st, nil
}

func (r *stackReader) StackDeployment(_ context.Context, project, name string) ([]byte, error) {
	st, err := r.stack(project, name, authz.StackRead)
	if err != nil {
		return nil, err
	}
	var data []byte
	err = r.rq.View(func(tx gatehouse.Tx) error {
		var err error
		data, _, err = tx.GetCheckpoint(st.ID, -1)
		return err
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, nil
	}
	return data, err
}

func (r *stackReader) DecryptStackSecret(ctx context.Context, project, name string, ciphertext []byte) ([]byte, error) {
	st, err := r.stack(project, name, authz.StackDecrypt)
	if err != nil {
		return nil, err
	}
	pt, err := r.rq.s.secrets.Decrypt(ctx, st.ID, ciphertext)
	if err != nil {
		return nil, errors.New("cannot decrypt it with the stack's key")
	}
	return pt, nil
}
