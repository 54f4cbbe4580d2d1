package httpapi_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestIssuerURLCredentialNotInAudit: an issuer URL with a password is refused, and neither
// the answer nor the audit log (which goes on to a SIEM) holds the password.
func TestIssuerURLCredentialNotInAudit(t *testing.T) {
	e := newEnv(t)
	for _, u := range []string{"https://ci-bot:S3cretPassw0rd@idp.example.com/", "http://ci-bot:S3cretPassw0rd@idp.example.com/"} {
		err := e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: map[string]any{"name": "idp", "url": u}}, nil)
		if err == nil || strings.Contains(err.Error(), "S3cret") {
			t.Errorf("register %s: %v", u, err)
		}
	}
	evs, err := listAudit(e)
	e.must(err)
	for _, ev := range evs {
		s := ev.Reason + " " + ev.Target
		for k, v := range ev.Details {
			s += " " + k + "=" + v
		}
		if strings.Contains(s, "S3cret") {
			t.Errorf("audit seq %d (%s %s) holds the password: %s", ev.Seq, ev.Action, ev.Outcome, s)
		}
	}
}
