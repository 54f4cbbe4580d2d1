package sqlstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Policy packs, groups, URLs, results and settings (migration 0024).

const policyPackCols = `id, org_id, name, version, version_tag, display_name, metadata, status, digest, size, created_by, created, completed`

func scanPolicyPack(s interface{ Scan(...any) error }) (*gatehouse.PolicyPack, error) {
	var p gatehouse.PolicyPack
	var created, completed int64
	if err := s.Scan(&p.ID, &p.OrgID, &p.Name, &p.Version, &p.VersionTag, &p.DisplayName, &p.Metadata, &p.Status, &p.Digest, &p.Size, &p.CreatedBy, &created, &completed); err != nil {
		return nil, err
	}
	p.Created, p.Completed = fromNS(created), fromNS(completed)
	return &p, nil
}

func (t *tx) CreatePolicyPack(p *gatehouse.PolicyPack) error {
	if p.Name == "" || p.VersionTag == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a policy pack version needs a name and a version tag")
	}
	var n int
	if err := t.queryRow(`SELECT COALESCE(MAX(version), 0) FROM policy_packs WHERE org_id = ? AND name = ?`, p.OrgID, p.Name).Scan(&n); err != nil {
		return dbErr(err)
	}
	p.Version, p.Status, p.Created = n+1, gatehouse.PolicyPackPending, t.now
	if p.Metadata == nil {
		p.Metadata = []byte("{}")
	}
	err := t.queryRow(`INSERT INTO policy_packs (org_id, name, version, version_tag, display_name, metadata, status, created_by, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		p.OrgID, validText(p.Name), p.Version, validText(p.VersionTag), validText(p.DisplayName), p.Metadata, p.Status, validText(p.CreatedBy), ns(p.Created)).Scan(&p.ID)
	return t.conflictOr(err, "policy pack "+p.Name+" version "+p.VersionTag+" already exists")
}

func (t *tx) GetPolicyPack(orgID int64, name, tag string) (*gatehouse.PolicyPack, error) {
	p, err := scanPolicyPack(t.queryRow(`SELECT `+policyPackCols+` FROM policy_packs WHERE org_id = ? AND name = ? AND version_tag = ?`, orgID, name, tag))
	if err != nil {
		return nil, one(err, "policy pack "+name+" version "+tag+" not found")
	}
	return p, nil
}

func (t *tx) GetPolicyPackByID(id int64) (*gatehouse.PolicyPack, error) {
	p, err := scanPolicyPack(t.queryRow(`SELECT `+policyPackCols+` FROM policy_packs WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "policy pack not found")
	}
	return p, nil
}

func (t *tx) ListPolicyPacks(orgID int64) ([]gatehouse.PolicyPack, error) {
	return orEmpty(queryAll(t, scanPolicyPack, `SELECT `+policyPackCols+` FROM policy_packs WHERE org_id = ? ORDER BY name, version`, orgID))
}

func (t *tx) PutPolicyPackArchive(id int64, data []byte) error {
	sum := sha256.Sum256(data)
	inline, key, err := t.checkpointRow(data)
	if err != nil {
		return err
	}
	r, err := t.exec(`UPDATE policy_packs SET archive = ?, blob_key = ?, digest = ?, size = ? WHERE id = ? AND status = ?`,
		inline, key, hex.EncodeToString(sum[:]), len(data), id, gatehouse.PolicyPackPending)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "the policy pack version is not awaiting an upload")
	}
	return nil
}

func (t *tx) GetPolicyPackArchive(id int64) ([]byte, error) {
	var data []byte
	var key, digest string
	if err := t.queryRow(`SELECT archive, blob_key, digest FROM policy_packs WHERE id = ?`, id).Scan(&data, &key, &digest); err != nil {
		return nil, one(err, "policy pack not found")
	}
	if digest == "" {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "the policy pack has no archive")
	}
	b, err := t.checkpointData(data, key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != digest {
		return nil, gatehouse.Errorf(gatehouse.EINTERNAL, "policy pack archive is corrupt: its SHA-256 does not match the digest recorded at upload")
	}
	return b, nil
}

func (t *tx) CompletePolicyPack(id int64) error {
	r, err := t.exec(`UPDATE policy_packs SET status = ?, completed = ? WHERE id = ? AND digest <> ''`, gatehouse.PolicyPackReady, ns(t.now), id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "the policy pack archive was not uploaded: publish it again")
	}
	return nil
}

func (t *tx) DeletePolicyPack(id int64) error {
	if _, err := t.exec(`DELETE FROM policy_urls WHERE pack_id = ?`, id); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM policy_packs WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack not found")
	}
	return nil
}

func (t *tx) DeletePendingPolicyPacks(before time.Time) (int, error) {
	if _, err := t.exec(`DELETE FROM policy_urls WHERE expires < ?`, ns(before)); err != nil {
		return 0, err
	}
	if _, err := t.exec(`DELETE FROM policy_urls WHERE pack_id IN (SELECT id FROM policy_packs WHERE status = ? AND created < ?)`, gatehouse.PolicyPackPending, ns(before)); err != nil {
		return 0, err
	}
	r, err := t.exec(`DELETE FROM policy_packs WHERE status = ? AND created < ?`, gatehouse.PolicyPackPending, ns(before))
	if err != nil {
		return 0, err
	}
	return int(affected(r)), nil
}

func (t *tx) CreatePolicyURL(u *gatehouse.PolicyURL) error {
	_, err := t.exec(`INSERT INTO policy_urls (digest, purpose, pack_id, update_id, expires) VALUES (?, ?, ?, ?, ?)`,
		hex.EncodeToString(u.Digest[:]), u.Purpose, u.PackID, u.UpdateID, ns(u.Expires))
	return t.conflictOr(err, "policy URL exists")
}

func (t *tx) UsePolicyURL(d [32]byte, purpose string) (*gatehouse.PolicyURL, error) {
	u, err := t.CheckPolicyURL(d, purpose)
	if err != nil || purpose != "upload" {
		return u, err
	}
	r, err := t.exec(`UPDATE policy_urls SET used = 1 WHERE digest = ? AND used = 0`, hex.EncodeToString(d[:]))
	if err != nil {
		return nil, err
	}
	if affected(r) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the policy pack upload URL was already used")
	}
	return u, nil
}

func (t *tx) CheckPolicyURL(d [32]byte, purpose string) (*gatehouse.PolicyURL, error) {
	u := &gatehouse.PolicyURL{Digest: d}
	var expires, used int64
	if err := t.queryRow(`SELECT purpose, pack_id, update_id, expires, used FROM policy_urls WHERE digest = ?`, hex.EncodeToString(d[:])).Scan(&u.Purpose, &u.PackID, &u.UpdateID, &expires, &used); err != nil {
		return nil, one(err, "unknown or expired policy pack URL")
	}
	u.Expires, u.Used = fromNS(expires), used != 0
	if u.Purpose != purpose {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "unknown or expired policy pack URL")
	}
	if !t.now.Before(u.Expires) {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the policy pack URL has expired")
	}
	if purpose == "upload" && u.Used {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the policy pack upload URL was already used")
	}
	return u, nil
}

const policyGroupCols = `id, org_id, name, is_default, selectors, packs, created, modified`

func scanPolicyGroup(s interface{ Scan(...any) error }) (*gatehouse.PolicyGroup, error) {
	var g gatehouse.PolicyGroup
	var def, created, modified int64
	var sel, packs string
	if err := s.Scan(&g.ID, &g.OrgID, &g.Name, &def, &sel, &packs, &created, &modified); err != nil {
		return nil, err
	}
	g.IsDefault, g.Created, g.Modified = def != 0, fromNS(created), fromNS(modified)
	if err := json.Unmarshal([]byte(sel), &g.Selectors); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "policy group %s: selectors unreadable", g.Name)
	}
	if err := json.Unmarshal([]byte(packs), &g.Packs); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "policy group %s: packs unreadable", g.Name)
	}
	return &g, nil
}

func (t *tx) PutPolicyGroup(g *gatehouse.PolicyGroup) error {
	if g.Name == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a policy group needs a name")
	}
	sels := g.Selectors
	if sels == nil {
		sels = []gatehouse.Scope{}
	}
	for i := range sels {
		sels[i].StackRef = nil
	}
	packs := g.Packs
	if packs == nil {
		packs = []gatehouse.PolicyGroupPack{}
	}
	sb, err := json.Marshal(sels)
	if err != nil {
		return err
	}
	pb, err := json.Marshal(packs)
	if err != nil {
		return err
	}
	g.Modified = t.now
	r, err := t.exec(`UPDATE policy_groups SET is_default = ?, selectors = ?, packs = ?, modified = ? WHERE org_id = ? AND name = ?`,
		b2i(g.IsDefault), string(sb), string(pb), ns(g.Modified), g.OrgID, g.Name)
	if err != nil {
		return err
	}
	if affected(r) > 0 {
		return t.queryRow(`SELECT id, created FROM policy_groups WHERE org_id = ? AND name = ?`, g.OrgID, g.Name).Scan(&g.ID, new(int64))
	}
	g.Created = t.now
	err = t.queryRow(`INSERT INTO policy_groups (org_id, name, is_default, selectors, packs, created, modified) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		g.OrgID, validText(g.Name), b2i(g.IsDefault), string(sb), string(pb), ns(g.Created), ns(g.Modified)).Scan(&g.ID)
	return t.conflictOr(err, "policy group "+g.Name+" already exists")
}

func (t *tx) GetPolicyGroup(orgID int64, name string) (*gatehouse.PolicyGroup, error) {
	g, err := scanPolicyGroup(t.queryRow(`SELECT `+policyGroupCols+` FROM policy_groups WHERE org_id = ? AND name = ?`, orgID, name))
	if err != nil {
		return nil, one(err, "policy group "+name+" not found")
	}
	return g, nil
}

func (t *tx) ListPolicyGroups(orgID int64) ([]gatehouse.PolicyGroup, error) {
	return orEmpty(queryAll(t, scanPolicyGroup, `SELECT `+policyGroupCols+` FROM policy_groups WHERE org_id = ? ORDER BY name`, orgID))
}

func (t *tx) DeletePolicyGroup(orgID int64, name string) error {
	r, err := t.exec(`DELETE FROM policy_groups WHERE org_id = ? AND name = ?`, orgID, name)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy group %s not found", name)
	}
	return nil
}

func (t *tx) AppendPolicyResults(rs []gatehouse.PolicyResult) error {
	for i := range rs {
		r := &rs[i]
		r.Created = t.now
		if err := t.queryRow(`INSERT INTO policy_results (org_id, stack_id, update_id, dry_run, kind, pack_name, pack_version, policy_name, level, severity, urn, message, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.OrgID, r.StackID, r.UpdateID, b2i(r.DryRun), r.Kind, validText(r.PackName), validText(r.PackVersion), validText(r.PolicyName),
			validText(r.Level), validText(r.Severity), validText(r.URN), validText(r.Message), ns(r.Created)).Scan(&r.ID); err != nil {
			return dbErr(err)
		}
	}
	return nil
}

func (t *tx) ListPolicyResults(f gatehouse.PolicyResultFilter) ([]gatehouse.PolicyResult, error) {
	q := `SELECT r.id, r.org_id, r.stack_id, r.update_id, r.dry_run, r.kind, r.pack_name, r.pack_version, r.policy_name, r.level, r.severity, r.urn, r.message, r.created,
		COALESCE(s.project, ''), COALESCE(s.name, '')
		FROM policy_results r LEFT JOIN stacks s ON s.id = r.stack_id WHERE r.org_id = ?`
	args := []any{f.OrgID}
	for _, c := range []struct {
		col string
		v   any
		set bool
	}{{"r.stack_id", f.StackID, f.StackID != 0}, {"r.update_id", f.UpdateID, f.UpdateID != ""}, {"r.pack_name", f.PackName, f.PackName != ""}, {"r.kind", f.Kind, f.Kind != ""}, {"r.id", f.ID, f.ID != 0}} {
		if c.set {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if f.StackIDs != nil {
		if len(f.StackIDs) == 0 {
			return []gatehouse.PolicyResult{}, nil
		}
		var b strings.Builder
		b.WriteString(` AND r.stack_id IN (`)
		args = appendInList(&b, args, f.StackIDs)
		b.WriteString(`)`)
		q += b.String()
	}
	q += ` ORDER BY r.id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	scan := func(sc scanner) (*gatehouse.PolicyResult, error) {
		var r gatehouse.PolicyResult
		var dry, created int64
		var project, name string
		if err := sc.Scan(&r.ID, &r.OrgID, &r.StackID, &r.UpdateID, &dry, &r.Kind, &r.PackName, &r.PackVersion, &r.PolicyName, &r.Level, &r.Severity, &r.URN, &r.Message, &created, &project, &name); err != nil {
			return nil, err
		}
		r.DryRun, r.Created = dry != 0, fromNS(created)
		if name != "" {
			r.StackRef = &gatehouse.StackRef{Project: project, Stack: name}
		}
		return &r, nil
	}
	return orEmpty(queryAll(t, scan, q, args...))
}

func (t *tx) GetPolicySettings(orgID int64) (*gatehouse.PolicySettings, error) {
	s := &gatehouse.PolicySettings{OrgID: orgID, ApprovedProviders: []gatehouse.ApprovedProvider{}}
	var enforced, modified int64
	var list string
	err := t.queryRow(`SELECT enforced, approved_providers, modified FROM policy_settings WHERE org_id = ?`, orgID).Scan(&enforced, &list, &modified)
	if err != nil {
		if gatehouse.IsCode(one(err, ""), gatehouse.ENOTFOUND) {
			return s, nil
		}
		return nil, dbErr(err)
	}
	s.Enforced, s.Modified = enforced != 0, fromNS(modified)
	if err := json.Unmarshal([]byte(list), &s.ApprovedProviders); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "approved providers unreadable")
	}
	return s, nil
}

func (t *tx) PutPolicySettings(s *gatehouse.PolicySettings) error {
	if err := t.bump(); err != nil {
		return err
	}
	list := s.ApprovedProviders
	if list == nil {
		list = []gatehouse.ApprovedProvider{}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	s.Modified = t.now
	r, err := t.exec(`UPDATE policy_settings SET enforced = ?, approved_providers = ?, modified = ? WHERE org_id = ?`, b2i(s.Enforced), string(b), ns(s.Modified), s.OrgID)
	if err != nil {
		return err
	}
	if affected(r) > 0 {
		return nil
	}
	_, err = t.exec(`INSERT INTO policy_settings (org_id, enforced, approved_providers, modified) VALUES (?, ?, ?, ?)`, s.OrgID, b2i(s.Enforced), string(b), ns(s.Modified))
	return t.conflictOr(err, "policy settings changed concurrently; retry")
}
