package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/token"
)

type leakAnswer struct {
	Token  string `json:"token"`
	SHA256 string `json:"sha256"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Result string `json:"result"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	State  string `json:"state"`
}

func leakCall(t *testing.T, c *cliwire.Client, path string, values ...string) ([]leakAnswer, error) {
	t.Helper()
	var out struct {
		Tokens []leakAnswer `json:"tokens"`
	}
	if values == nil {
		values = []string{}
	}
	err := c.Do(cliwire.Call{Method: http.MethodPost, Path: path, Body: map[string]any{"tokens": values}}, &out)
	return out.Tokens, err
}

// newTokenValue creates a token through the API and returns its ID and value.
func newTokenValue(t *testing.T, c *cliwire.Client, path string, body map[string]any) (string, string) {
	t.Helper()
	var out struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	if err := c.Do(cliwire.Call{Method: http.MethodPost, Path: path, Body: body}, &out); err != nil {
		t.Fatal(err)
	}
	return out.ID, out.TokenValue
}

func newMember(t *testing.T, e *env, name, role string) *cliwire.Client {
	t.Helper()
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/users", Body: map[string]string{"name": name, "role": role}}, &out))
	return cliwire.New(e.url, out.TokenValue)
}

func auditEvents(t *testing.T, e *env, action string) []gatehouse.AuditEvent {
	t.Helper()
	var evs []gatehouse.AuditEvent
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{Action: action, Ascending: true, Limit: 10000})
		return err
	}))
	return evs
}

// assertNoValues fails if any audit event carries one of the token values (or its body).
func assertNoValues(t *testing.T, e *env, values ...string) {
	t.Helper()
	for _, ev := range auditEvents(t, e, "") {
		b, _ := json.Marshal(ev)
		for _, v := range values {
			if len(v) > 20 && strings.Contains(string(b), v[len("gatehouse_"):]) {
				t.Fatalf("audit event %s (%s) carries a token value: %s", ev.ID, ev.Action, b)
			}
		}
	}
}

func wellFormedUnknown(t *testing.T, k token.Kind) string {
	t.Helper()
	v, err := token.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lookAlike changes a token's last checksum character: the right shape, a wrong checksum.
func lookAlike(v string) string {
	last := v[len(v)-1]
	c := byte('A')
	if last == 'A' {
		c = 'B'
	}
	return v[:len(v)-1] + string(c)
}

func TestLeakedTokenStatusAndRevoke(t *testing.T) {
	e := newEnv(t)
	bob := newMember(t, e, "bob", "member")
	laptopID, laptop := newTokenValue(t, e.admin, "/api/user/tokens", map[string]any{"name": "alice-laptop"})
	orgID, orgTok := newTokenValue(t, e.admin, "/api/orgs/acme/tokens", map[string]any{"name": "ci-admin", "admin": true})
	e.must(e.admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	teamID, teamTok := newTokenValue(t, e.admin, "/api/orgs/acme/teams/deployers/tokens", map[string]any{"name": "pipeline"})
	bobOwnID, bobOwn := newTokenValue(t, bob, "/api/user/tokens", map[string]any{"name": "bob-laptop"})
	unknown := wellFormedUnknown(t, token.Personal)
	fake := lookAlike(laptop)

	// A member checks: live or dead for everything; ID and name only for the own token.
	got, err := leakCall(t, bob, "/api/tokens/status", laptop, orgTok, bobOwn, unknown, fake, "not a token", teamTok)
	e.must(err)
	want := []leakAnswer{
		{Kind: "pat", Status: "live"},
		{Kind: "org", Status: "live"},
		{Kind: "pat", Status: "live", ID: bobOwnID, Name: "bob-laptop", State: "active"},
		{Kind: "pat", Status: "dead"},
		{Status: "malformed"},
		{Status: "malformed"},
		{Kind: "team", Status: "live"},
	}
	if len(got) != len(want) {
		t.Fatalf("status answered %d tokens, want %d: %+v", len(got), len(want), got)
	}
	values := []string{laptop, orgTok, bobOwn, unknown, fake, "not a token", teamTok}
	for i := range want {
		g := got[i]
		if g.Kind != want[i].Kind || g.Status != want[i].Status || g.ID != want[i].ID || g.Name != want[i].Name || g.State != want[i].State {
			t.Errorf("status[%d] = %+v, want %+v", i, g, want[i])
		}
		if strings.Contains(g.Token, values[i][min(len(values[i]), 20):]) && len(values[i]) > 20 {
			t.Errorf("status[%d] repeats the token value: %q", i, g.Token)
		}
		if want[i].Kind != "" {
			if sum := sha256.Sum256([]byte(values[i])); g.SHA256 != fmt.Sprintf("%x", sum) {
				t.Errorf("status[%d].sha256 = %q", i, g.SHA256)
			}
		}
	}

	// The organization's admin learns the organization's tokens, not another user's
	// personal token.
	got, err = leakCall(t, e.admin, "/api/tokens/status", orgTok, teamTok, bobOwn)
	e.must(err)
	if got[0].ID != orgID || got[0].Name != "ci-admin" || got[1].ID != teamID || got[1].Name != "pipeline" {
		t.Errorf("admin status of org and team tokens = %+v", got[:2])
	}
	if got[2].ID != "" || got[2].Name != "" || got[2].Status != "live" {
		t.Errorf("admin status of bob's personal token = %+v, want live without ID and name", got[2])
	}
	// A pipeline token may check (and kill) leaked tokens, but learns no names.
	got, err = leakCall(t, cliwire.New(e.url, teamTok), "/api/tokens/status", orgTok)
	e.must(err)
	if got[0].Status != "live" || got[0].ID != "" {
		t.Errorf("team token's status of the org token = %+v", got[0])
	}

	// The member kills the admin's leaked laptop token and the admin organization token
	// (named twice), without learning their names.
	got, err = leakCall(t, bob, "/api/tokens/revoke", laptop, unknown, orgTok, orgTok, fake)
	e.must(err)
	for i, w := range []string{"revoked", "unknown", "revoked", "already-dead", "unknown"} {
		if got[i].Result != w || got[i].ID != "" || got[i].Name != "" {
			t.Errorf("revoke[%d] = %+v, want %s without ID and name", i, got[i], w)
		}
	}
	wantStatus(t, cliwire.New(e.url, laptop).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil), 401)
	wantStatus(t, cliwire.New(e.url, orgTok).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/acme"}, nil), 401)
	// Bob's own token and alice's admin token are untouched.
	e.must(bob.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))

	got, err = leakCall(t, bob, "/api/tokens/revoke", laptop, bobOwn)
	e.must(err)
	if got[0].Result != "already-dead" || got[1].Result != "revoked" || got[1].ID != bobOwnID || got[1].State != "revoked" {
		t.Errorf("second revoke = %+v", got)
	}
	got, err = leakCall(t, e.admin, "/api/tokens/status", laptop, orgTok)
	e.must(err)
	if got[0].Status != "dead" || got[0].ID != laptopID || got[0].State != "revoked" || got[1].Status != "dead" || got[1].State != "revoked" {
		t.Errorf("status after revocation = %+v", got)
	}

	// Audit: one event per revoked token, by ID, in the token's organization; the call's
	// own event lists the IDs. No value anywhere.
	evs := auditEvents(t, e, "token:revoke-leaked")
	perToken := map[string]gatehouse.AuditEvent{}
	for _, ev := range evs {
		if ev.Target != "tokens" {
			perToken[ev.Target] = ev
		}
	}
	if len(perToken) != 3 || perToken[laptopID].ActorName != "bob" || perToken[orgID].OrgName != "acme" || perToken[laptopID].OrgID != 0 {
		t.Errorf("per-token revocation events = %+v", perToken)
	}
	if _, ok := perToken[bobOwnID]; !ok {
		t.Errorf("no revocation event for %s", bobOwnID)
	}
	assertNoValues(t, e, laptop, orgTok, teamTok, bobOwn, unknown, fake)

	// Limits and credentials.
	many := make([]string, 101)
	for i := range many {
		many[i] = unknown
	}
	_, err = leakCall(t, bob, "/api/tokens/status", many...)
	wantStatus(t, err, 400)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/tokens/revoke", NoAuth: true, Body: map[string]any{"tokens": []string{teamTok}}}, nil), 401)
	_, err = leakCall(t, cliwire.New(e.url, laptop), "/api/tokens/status", teamTok)
	wantStatus(t, err, 401)
}

func TestLeakedLeaseToken(t *testing.T) {
	e := newEnv(t)
	path := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	r, err := e.startRun(e.admin, path, "update", false)
	e.must(err)
	got, err := leakCall(t, e.admin, "/api/tokens/status", r.Lease)
	e.must(err)
	if got[0].Kind != "lease" || got[0].Status != "live" {
		t.Fatalf("lease status = %+v", got[0])
	}
	got, err = leakCall(t, e.admin, "/api/tokens/revoke", r.Lease)
	e.must(err)
	if got[0].Result != "not-revocable" {
		t.Fatalf("lease revoke = %+v", got[0])
	}
	e.must(r.complete("succeeded"))
	got, err = leakCall(t, e.admin, "/api/tokens/status", r.Lease)
	e.must(err)
	if got[0].Status != "dead" {
		t.Fatalf("lease status after the update = %+v", got[0])
	}
}

// scanningKey is a GitHub-like secret-scanning signing key.
type scanningKey struct {
	id   string
	priv *ecdsa.PrivateKey
}

func newScanningKey(t *testing.T, id string) *scanningKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &scanningKey{id: id, priv: priv}
}

// keysDocument is GitHub's public keys document for keys.
func keysDocument(t *testing.T, keys ...*scanningKey) []byte {
	t.Helper()
	type entry struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	var doc struct {
		PublicKeys []entry `json:"public_keys"`
	}
	for i, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		doc.PublicKeys = append(doc.PublicKeys, entry{KeyIdentifier: k.id, Key: pemText, IsCurrent: i == 0})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign signs body as GitHub does: ECDSA P-256 over SHA-256 of the raw body, ASN.1 DER,
// base64.
func (k *scanningKey) sign(t *testing.T, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// malleate turns a valid signature (r, s) into the other valid signature (r, n-s).
func malleate(t *testing.T, sig64 string) string {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	rs.S = new(big.Int).Sub(elliptic.P256().Params().N, rs.S)
	out, err := asn1.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

type scanLabel struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

func deliver(e *env, keyID, sig string, body []byte) ([]scanLabel, error) {
	var out []scanLabel
	h := http.Header{}
	if keyID != "" {
		h.Set("Github-Public-Key-Identifier", keyID)
	}
	if sig != "" {
		h.Set("Github-Public-Key-Signature", sig)
	}
	err := e.admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/secret-scanning/github", NoAuth: true, Body: body, Header: h}, &out)
	return out, err
}

func TestParseSecretScanningKeys(t *testing.T) {
	k1, k2 := newScanningKey(t, "k1"), newScanningKey(t, "k2")
	keys, err := httpapi.ParseSecretScanningKeys(keysDocument(t, k1, k2))
	if err != nil || len(keys) != 2 || keys[0].KeyID != "k1" || !keys[1].Key.Equal(&k2.priv.PublicKey) {
		t.Fatalf("ParseSecretScanningKeys = %+v, %v", keys, err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaDoc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "r", "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	p384Doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "p", "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der384}))}}})
	for name, doc := range map[string][]byte{
		"empty":     []byte(`{"public_keys":[]}`),
		"not json":  []byte(`nope`),
		"no id":     []byte(`{"public_keys":[{"key":"x"}]}`),
		"not pem":   []byte(`{"public_keys":[{"key_identifier":"a","key":"x"}]}`),
		"rsa":       rsaDoc,
		"p384":      p384Doc,
		"duplicate": keysDocument(t, k1, k1),
	} {
		if _, err := httpapi.ParseSecretScanningKeys(doc); err == nil {
			t.Errorf("%s: ParseSecretScanningKeys accepted it", name)
		}
	}
}

func TestSecretScanningPartner(t *testing.T) {
	current, old := newScanningKey(t, "current-key"), newScanningKey(t, "old-key")
	keys, err := httpapi.ParseSecretScanningKeys(keysDocument(t, current, old))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *httpapi.Config) { c.SecretScanningKeys = keys })
	leakyID, leaky := newTokenValue(t, e.admin, "/api/user/tokens", map[string]any{"name": "leaky"})
	ciID, ci := newTokenValue(t, e.admin, "/api/orgs/acme/tokens", map[string]any{"name": "ci"})
	deadID, dead := newTokenValue(t, e.admin, "/api/user/tokens", map[string]any{"name": "already-revoked"})
	e.must(e.admin.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/user/tokens/" + deadID}, nil))
	_, bystander := newTokenValue(t, e.admin, "/api/user/tokens", map[string]any{"name": "bystander"})
	unknown := wellFormedUnknown(t, token.Org)
	fake := lookAlike(ci)

	// The body as GitHub sends it; its exact bytes (spacing, key order) are what is signed.
	body := []byte(fmt.Sprintf(`[
  {"token":"%s","type":"gatehouse_token","url":"https://github.com/octo/app/blob/abc/ci.env","source":"content"},
  {"source":"commit", "token":"%s","type":"gatehouse_token","url":""},
  {"token":"%s","type":"gatehouse_token","url":"https://gist.github.com/x","source":"gist_content"},
  {"token":"%s","type":"gatehouse_token","url":"https://github.com/octo/app/issues/1","source":"issue_comment"},
  {"token":"%s","type":"gatehouse_token","url":"https://github.com/octo/app/blob/abc/old.env","source":"content"}
]`, leaky, ci, unknown, fake, dead))
	sig := current.sign(t, body)
	wantLabels := []scanLabel{
		{leaky, "gatehouse_token", "true_positive"},
		{ci, "gatehouse_token", "true_positive"},
		{unknown, "gatehouse_token", "false_positive"},
		{fake, "gatehouse_token", "false_positive"},
		{dead, "gatehouse_token", "true_positive"},
	}
	check := func(what string, got []scanLabel, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != len(wantLabels) {
			t.Fatalf("%s: %d labels, want %d: %+v", what, len(got), len(wantLabels), got)
		}
		for i := range wantLabels {
			if got[i] != wantLabels[i] {
				t.Errorf("%s: label %d = %+v, want %+v", what, i, got[i], wantLabels[i])
			}
		}
	}

	// Refused deliveries change nothing and are recorded.
	_, err = deliver(e, current.id, sig, append([]byte(" "), body...)) // the body changed after signing
	wantStatus(t, err, 401)
	_, err = deliver(e, current.id, current.sign(t, []byte("[]")), body) // a signature of another body
	wantStatus(t, err, 401)
	_, err = deliver(e, "no-such-key", sig, body)
	wantStatus(t, err, 401)
	_, err = deliver(e, old.id, sig, body) // signed by current, presented as old
	wantStatus(t, err, 401)
	_, err = deliver(e, current.id, "", body)
	wantStatus(t, err, 401)
	_, err = deliver(e, "", sig, body)
	wantStatus(t, err, 401)
	_, err = deliver(e, current.id, "!!!not base64", body)
	wantStatus(t, err, 401)
	e.must(e.admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
	e.must(cliwire.New(e.url, leaky).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
	failures := 0
	for _, ev := range auditEvents(t, e, "secret-scanning:delivery") {
		if ev.Outcome != gatehouse.OutcomeFailure || ev.Reason == "" {
			t.Errorf("refused delivery recorded as %+v", ev)
		}
		failures++
	}
	if failures != 7 {
		t.Errorf("%d refused deliveries recorded, want 7", failures)
	}
	if n := len(auditEvents(t, e, "token:leak-reported")); n != 0 {
		t.Fatalf("refused deliveries reported %d leaks", n)
	}

	// The delivery: live tokens die, every token Gatehouse issued is recorded.
	got, err := deliver(e, current.id, sig, body)
	check("delivery", got, err)
	wantStatus(t, cliwire.New(e.url, leaky).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil), 401)
	wantStatus(t, cliwire.New(e.url, ci).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/acme"}, nil), 401)
	e.must(cliwire.New(e.url, bystander).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
	reported := auditEvents(t, e, "token:leak-reported")
	byTarget := map[string]gatehouse.AuditEvent{}
	for _, ev := range reported {
		byTarget[ev.Target] = ev
	}
	if len(reported) != 3 || len(byTarget) != 3 {
		t.Fatalf("leak reports recorded: %+v", reported)
	}
	if ev := byTarget[leakyID]; ev.Details["revoked"] != "true" || ev.Details["url"] != "https://github.com/octo/app/blob/abc/ci.env" || ev.Details["source"] != "content" || ev.ActorKind != "partner" {
		t.Errorf("leak report of the personal token = %+v", ev)
	}
	if ev := byTarget[ciID]; ev.Details["revoked"] != "true" || ev.OrgName != "acme" || ev.Details["source"] != "commit" {
		t.Errorf("leak report of the organization token = %+v", ev)
	}
	if ev := byTarget[deadID]; !strings.HasPrefix(ev.Details["revoked"], "false") {
		t.Errorf("leak report of the revoked token = %+v", ev)
	}
	deliveries := func() int {
		n := 0
		for _, ev := range auditEvents(t, e, "secret-scanning:delivery") {
			if ev.Outcome == gatehouse.OutcomeSuccess {
				n++
				if ev.Details["matches"] != "5" || ev.Details["true_positives"] != "3" || ev.Details["revoked"] != "2" || ev.Details["key_id"] != current.id {
					t.Errorf("delivery event = %+v", ev)
				}
			}
		}
		return n
	}
	if n := deliveries(); n != 1 {
		t.Fatalf("%d delivery events, want 1", n)
	}

	// Redeliveries: the same signature, a fresh signature, the malleated signature, and
	// another (older) key: the same answer, nothing revoked or recorded again.
	for name, s := range map[string][2]string{
		"same signature":       {current.id, sig},
		"re-signed":            {current.id, current.sign(t, body)},
		"malleated signature":  {current.id, malleate(t, sig)},
		"signed with old key":  {old.id, old.sign(t, body)},
		"same signature again": {current.id, sig},
	} {
		got, err := deliver(e, s[0], s[1], body)
		check(name, got, err)
	}
	if n := len(auditEvents(t, e, "token:leak-reported")); n != 3 {
		t.Errorf("redeliveries recorded leaks again: %d events, want 3", n)
	}
	if n := deliveries(); n != 1 {
		t.Errorf("redeliveries recorded: %d delivery events, want 1", n)
	}

	// A new delivery naming a token that is already dead is a new report (recorded), but
	// revokes nothing.
	body2 := []byte(fmt.Sprintf(`[{"token":"%s","type":"gatehouse_token","url":"https://github.com/octo/other","source":"content"}]`, leaky))
	got2, err := deliver(e, old.id, old.sign(t, body2), body2)
	if err != nil || len(got2) != 1 || got2[0].Label != "true_positive" {
		t.Fatalf("second report = %+v, %v", got2, err)
	}
	if n := len(auditEvents(t, e, "token:leak-reported")); n != 4 {
		t.Errorf("%d leak reports, want 4", n)
	}

	// An empty delivery and a malformed one (signed: GitHub's, but not an array).
	got, err = deliver(e, current.id, current.sign(t, []byte("[]")), []byte("[]"))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty delivery = %#v, %v", got, err)
	}
	obj := []byte(`{"token":"x"}`)
	_, err = deliver(e, current.id, current.sign(t, obj), obj)
	wantStatus(t, err, 400)
	big := []byte("[" + strings.Repeat(" ", 1<<20) + "]")
	_, err = deliver(e, current.id, current.sign(t, big), big)
	wantStatus(t, err, 413)

	assertNoValues(t, e, leaky, ci, dead, unknown, fake, bystander)
}

func TestSecretScanningNotConfiguredAndRateLimited(t *testing.T) {
	k := newScanningKey(t, "k")
	body := []byte("[]")
	// Without keys every delivery is refused.
	plain := newEnv(t)
	_, err := deliver(plain, k.id, k.sign(t, body), body)
	wantStatus(t, err, 401)

	keys, err := httpapi.ParseSecretScanningKeys(keysDocument(t, k))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *httpapi.Config) { c.SecretScanningKeys = keys; c.AuthFailureLimit = 2 })
	for i := 0; i < 2; i++ {
		_, err = deliver(e, k.id, "AAAA", body)
		wantStatus(t, err, 401)
	}
	_, err = deliver(e, k.id, "AAAA", body)
	wantStatus(t, err, 429)
	// Bad signatures from the source stay blocked until the window ends; a good one is
	// never refused.
	_, err = deliver(e, k.id, "AAAA", body)
	wantStatus(t, err, 429)
	_, err = deliver(e, k.id, k.sign(t, body), body)
	e.must(err)
}

// TestLeakedDeployCredentials: a runner pool's token and a run's deployment credential
// named by value are live to the status call, and the revoke call kills them (the pool is
// deleted; the run is cancelled, which ends its credential), recorded in the
// organization's audit log. Found in review: both were reported dead and left alive.
func TestLeakedDeployCredentials(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	_, err := d.trigger(d.admin, "update")
	d.must(err)
	job := d.lease()
	if job == nil {
		t.Fatal("no run to lease")
	}
	type answer struct {
		Tokens []struct{ Kind, Status, Result string }
	}
	var st answer
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: "/api/tokens/status", Body: map[string]any{"tokens": []string{d.pool, job.Credential}}}, &st))
	if len(st.Tokens) != 2 || st.Tokens[0].Kind != "runner" || st.Tokens[0].Status != "live" || st.Tokens[1].Kind != "deploy" || st.Tokens[1].Status != "live" {
		t.Fatalf("status of a live pool token and run credential: %+v", st)
	}
	var rv answer
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: "/api/tokens/revoke", Body: map[string]any{"tokens": []string{d.pool, job.Credential}}}, &rv))
	if len(rv.Tokens) != 2 || rv.Tokens[0].Result != "revoked" || rv.Tokens[1].Result != "revoked" {
		t.Fatalf("revoke: %+v", rv)
	}
	wantStatus(t, d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/lease", Body: deploy.LeaseRequest{Runner: "r1"}}, nil), 401)
	wantStatus(t, cliwire.New(d.url, job.Credential).Do(cliwire.Call{Method: "GET", Path: d.prod}, nil), 401)
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: "/api/tokens/revoke", Body: map[string]any{"tokens": []string{d.pool}}}, &rv))
	if rv.Tokens[0].Result != "already-dead" {
		t.Fatalf("revoking a deleted pool's token again: %+v", rv)
	}
	evs, err := listAudit(d.env)
	d.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == "token:revoke-leaked" && ev.OrgName == "acme" && (strings.HasPrefix(ev.Target, "pool/") || strings.HasPrefix(ev.Target, "deployment/")) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d revocations of deployment credentials in acme's audit log, want 2", n)
	}
}
