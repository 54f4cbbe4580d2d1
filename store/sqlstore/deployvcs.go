package sqlstore

import gatehouse "github.com/gatehouse-dev/gatehouse"

// Organizations' own VCS webhook secrets (deploy_vcs_secrets).

func scanVCSSecret(s interface{ Scan(...any) error }) (*gatehouse.DeployVCSSecret, error) {
	var v gatehouse.DeployVCSSecret
	var created int64
	if err := s.Scan(&v.OrgID, &v.Provider, &v.Sealed, &created, &v.CreatedBy); err != nil {
		return nil, err
	}
	v.Created = fromNS(created)
	return &v, nil
}

func (t *tx) GetDeployVCSSecret(orgID int64, provider string) (*gatehouse.DeployVCSSecret, error) {
	v, err := scanVCSSecret(t.queryRow(`SELECT org_id, provider, sealed, created, created_by FROM deploy_vcs_secrets WHERE org_id = ? AND provider = ?`, orgID, provider))
	if err != nil {
		return nil, one(err, "the organization has no webhook secret for this provider")
	}
	return v, nil
}

func (t *tx) ListDeployVCSSecrets(orgID int64) ([]gatehouse.DeployVCSSecret, error) {
	return queryAll(t, scanVCSSecret, `SELECT org_id, provider, sealed, created, created_by FROM deploy_vcs_secrets WHERE org_id = ? ORDER BY provider`, orgID)
}

func (t *tx) PutDeployVCSSecret(s *gatehouse.DeployVCSSecret) error {
	if s.OrgID == 0 || s.Provider == "" || len(s.Sealed) == 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "a webhook secret needs an organization, a provider and a sealed value")
	}
	s.Created = t.now
	_, err := t.exec(`INSERT INTO deploy_vcs_secrets (org_id, provider, sealed, created, created_by) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (org_id, provider) DO UPDATE SET sealed = excluded.sealed, created = excluded.created, created_by = excluded.created_by`,
		s.OrgID, validText(s.Provider), s.Sealed, ns(s.Created), validText(s.CreatedBy))
	return t.wrap(err)
}

func (t *tx) DeleteDeployVCSSecret(orgID int64, provider string) error {
	r, err := t.exec(`DELETE FROM deploy_vcs_secrets WHERE org_id = ? AND provider = ?`, orgID, provider)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "the organization has no webhook secret for this provider")
	}
	return nil
}
