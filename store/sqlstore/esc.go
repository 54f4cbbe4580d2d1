package sqlstore

import (
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Environments (Pulumi ESC): see gatehouse.EnvTx.

const envCols = `e.id, e.org_id, o.name, e.project, e.name, e.revision, e.deletion_protected, e.created, e.modified, e.created_by, e.creator_user_id`

const envFrom = ` FROM environments e JOIN orgs o ON o.id = e.org_id`

func scanEnv(sc interface{ Scan(...any) error }) (*gatehouse.Environment, error) {
	var e gatehouse.Environment
	var prot, created, modified int64
	if err := sc.Scan(&e.ID, &e.OrgID, &e.OrgName, &e.Project, &e.Name, &e.Revision, &prot, &created, &modified, &e.CreatedBy, &e.CreatorUserID); err != nil {
		return nil, err
	}
	e.DeletionProtected = prot != 0
	e.Created, e.Modified = fromNS(created), fromNS(modified)
	return &e, nil
}

func (t *tx) CreateEnvironment(e *gatehouse.Environment, yaml []byte) error {
	e.Created, e.Modified, e.Revision = t.now, t.now, 1
	err := t.queryRow(`INSERT INTO environments (org_id, project, name, revision, deletion_protected, created, modified, created_by, creator_user_id) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) RETURNING id`,
		e.OrgID, e.Project, e.Name, b2i(e.DeletionProtected), ns(t.now), ns(t.now), e.CreatedBy, e.CreatorUserID).Scan(&e.ID)
	if err := t.conflictOr(err, "environment '"+e.Project+"/"+e.Name+"' already exists"); err != nil {
		return err
	}
	if yaml == nil {
		yaml = []byte{}
	}
	_, err = t.exec(`INSERT INTO env_revisions (env_id, number, yaml, created, creator_login) VALUES (?, 1, ?, ?, ?)`, e.ID, yaml, ns(t.now), e.CreatedBy)
	return err
}

func (t *tx) GetEnvironment(orgID int64, project, name string) (*gatehouse.Environment, error) {
	e, err := scanEnv(t.queryRow(`SELECT `+envCols+envFrom+` WHERE e.org_id = ? AND e.project = ? AND e.name = ?`, orgID, project, name))
	if err != nil {
		return nil, one(err, "environment not found")
	}
	return e, t.fillEnvTags(e)
}

func (t *tx) GetEnvironmentByID(id int64) (*gatehouse.Environment, error) {
	e, err := scanEnv(t.queryRow(`SELECT `+envCols+envFrom+` WHERE e.id = ?`, id))
	if err != nil {
		return nil, one(err, "environment not found")
	}
	return e, t.fillEnvTags(e)
}

func (t *tx) fillEnvTags(e *gatehouse.Environment) error {
	tags, err := t.ListEnvKVTags(e.ID)
	e.Tags = make(map[string]string, len(tags))
	for _, tg := range tags {
		e.Tags[tg.Name] = tg.Value
	}
	return err
}

func (t *tx) ListEnvKVTags(envID int64) ([]gatehouse.EnvKVTag, error) {
	scan := func(sc scanner) (*gatehouse.EnvKVTag, error) {
		tg := gatehouse.EnvKVTag{EnvID: envID}
		var created, modified int64
		if err := sc.Scan(&tg.Name, &tg.Value, &created, &modified, &tg.EditorLogin); err != nil {
			return nil, err
		}
		tg.Created, tg.Modified = fromNS(created), fromNS(modified)
		return &tg, nil
	}
	return queryAll(t, scan, `SELECT name, value, created, modified, editor_login FROM env_kv_tags WHERE env_id = ? ORDER BY name`, envID)
}

func (t *tx) SetEnvKVTag(tg *gatehouse.EnvKVTag) error {
	tg.Created, tg.Modified = t.now, t.now
	_, err := t.exec(`INSERT INTO env_kv_tags (env_id, name, value, created, modified, editor_login) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (env_id, name) DO UPDATE SET value = excluded.value, modified = excluded.modified, editor_login = excluded.editor_login`,
		tg.EnvID, tg.Name, tg.Value, ns(t.now), ns(t.now), tg.EditorLogin)
	return err
}

func (t *tx) DeleteEnvKVTag(envID int64, name string) error {
	r, err := t.exec(`DELETE FROM env_kv_tags WHERE env_id = ? AND name = ?`, envID, name)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "environment tag '%s' not found", name)
	}
	return nil
}

func (t *tx) ListEnvironments(f gatehouse.EnvFilter) ([]gatehouse.Environment, string, error) {
	if len(f.OrgIDs) == 0 {
		return nil, "", nil
	}
	limit, after, err := idPage(f.Limit, f.Continuation)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	args := make([]any, 0, len(f.OrgIDs)+2)
	b.WriteString(`SELECT ` + envCols + envFrom + ` WHERE e.org_id IN (`)
	args = appendInList(&b, args, f.OrgIDs)
	b.WriteString(") AND e.id > ? ORDER BY e.id LIMIT ?")
	args = append(args, after, limit+1)
	out, err := queryAll(t, scanEnv, b.String(), args...)
	if err != nil {
		return nil, "", err
	}
	out, next := cutIDPage(out, limit, func(e *gatehouse.Environment) int64 { return e.ID })
	return out, next, t.fillEnvTagsOf(out)
}

// fillEnvTagsOf fills the tags of listed environments in one query (tag grants select by
// them).
func (t *tx) fillEnvTagsOf(envs []gatehouse.Environment) error {
	if len(envs) == 0 {
		return nil
	}
	byID := make(map[int64]*gatehouse.Environment, len(envs))
	ids := make([]int64, 0, len(envs))
	for i := range envs {
		envs[i].Tags = map[string]string{}
		byID[envs[i].ID] = &envs[i]
		ids = append(ids, envs[i].ID)
	}
	var b strings.Builder
	b.WriteString(`SELECT env_id, name, value FROM env_kv_tags WHERE env_id IN (`)
	args := appendInList(&b, make([]any, 0, len(ids)), ids)
	b.WriteString(")")
	rows, err := t.query(b.String(), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var name, value string
		if err := rows.Scan(&id, &name, &value); err != nil {
			return dbErr(err)
		}
		if e := byID[id]; e != nil {
			e.Tags[name] = value
		}
	}
	return dbErr(rows.Err())
}

func (t *tx) DeleteEnvironment(id int64) error {
	var prot int64
	if err := t.queryRow(`SELECT deletion_protected FROM environments WHERE id = ?`, id).Scan(&prot); err != nil {
		return one(err, "environment not found")
	}
	if prot != 0 {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "the environment is deletion-protected: turn deletion protection off in its settings first")
	}
	// Grants and protection rules naming it change security facts.
	if err := t.bump(); err != nil {
		return err
	}
	// Its webhooks (stack_id: the negated environment ID, webhook.EnvScope).
	if err := t.deleteStackWebhooks(-id); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM env_sessions WHERE env_id = ?`,
		`DELETE FROM env_tags WHERE env_id = ?`,
		`DELETE FROM env_kv_tags WHERE env_id = ?`,
		`DELETE FROM env_revisions WHERE env_id = ?`,
		`DELETE FROM env_keys WHERE env_id = ?`,
		`DELETE FROM grants WHERE env_id = ?`,
		`DELETE FROM protections WHERE env_id = ?`,
		`DELETE FROM environments WHERE id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) SetEnvironmentProtected(id int64, protected bool) error {
	r, err := t.exec(`UPDATE environments SET deletion_protected = ?, modified = ? WHERE id = ?`, b2i(protected), ns(t.now), id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "environment not found")
	}
	return nil
}

func (t *tx) PutEnvRevision(envID int64, expect int, yaml []byte, login string) (int, error) {
	var cur int
	if err := t.queryRow(`SELECT revision FROM environments WHERE id = ?`, envID).Scan(&cur); err != nil {
		return 0, one(err, "environment not found")
	}
	if expect >= 0 && cur != expect {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "the environment has changed since you read it (revision %d is newer than yours, %d): read it again", cur, expect)
	}
	// The conditional update is the race decider: of two writers that read the same
	// revision, exactly one moves it.
	r, err := t.exec(`UPDATE environments SET revision = revision + 1, modified = ? WHERE id = ? AND revision = ?`, ns(t.now), envID, cur)
	if err != nil {
		return 0, err
	}
	if affected(r) == 0 {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "the environment changed concurrently: read it again")
	}
	if yaml == nil {
		yaml = []byte{}
	}
	if _, err := t.exec(`INSERT INTO env_revisions (env_id, number, yaml, created, creator_login) VALUES (?, ?, ?, ?, ?)`, envID, cur+1, yaml, ns(t.now), login); err != nil {
		return 0, t.conflictOr(err, "the environment changed concurrently: read it again")
	}
	return cur + 1, nil
}

func (t *tx) GetEnvRevision(envID int64, number int) (*gatehouse.EnvRevision, error) {
	r := gatehouse.EnvRevision{EnvID: envID, Number: number}
	var created int64
	var rt retraction
	if err := t.queryRow(`SELECT yaml, created, creator_login, retracted, retract_replacement, retracted_by, retract_reason FROM env_revisions WHERE env_id = ? AND number = ?`, envID, number).Scan(&r.YAML, &created, &r.CreatorLogin, &rt.at, &rt.replacement, &rt.by, &rt.reason); err != nil {
		return nil, one(err, "revision "+strconv.Itoa(number)+" not found")
	}
	r.Created, r.Retracted = fromNS(created), rt.get()
	return &r, nil
}

// retraction scans a revision's retraction columns.
type retraction struct {
	at, replacement int64
	by, reason      string
}

func (rt retraction) get() *gatehouse.EnvRetraction {
	if rt.at == 0 {
		return nil
	}
	return &gatehouse.EnvRetraction{Replacement: int(rt.replacement), At: fromNS(rt.at), ByLogin: rt.by, Reason: rt.reason}
}

func (t *tx) RetractEnvRevision(envID int64, number, replacement int, login, reason string) (int, error) {
	var cur int
	if err := t.queryRow(`SELECT revision FROM environments WHERE id = ?`, envID).Scan(&cur); err != nil {
		return 0, one(err, "environment not found")
	}
	if number == cur {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "the latest revision (%d) cannot be retracted: write a new definition first, then retract this one", number)
	}
	r, err := t.GetEnvRevision(envID, number)
	if err != nil {
		return 0, err
	}
	if r.Retracted != nil {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "revision %d is already retracted", number)
	}
	if replacement == number {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "a revision cannot replace itself")
	}
	if replacement == 0 {
		err := t.queryRow(`SELECT COALESCE(MAX(number), 0) FROM env_revisions WHERE env_id = ? AND number < ? AND retracted = 0`, envID, number).Scan(&replacement)
		if err != nil {
			return 0, dbErr(err)
		}
		if replacement == 0 {
			return 0, gatehouse.Errorf(gatehouse.EINVALID, "revision %d has no earlier revision to replace it: name one with a replacement", number)
		}
	} else {
		rep, err := t.GetEnvRevision(envID, replacement)
		if err != nil {
			return 0, gatehouse.Errorf(gatehouse.EINVALID, "replacement revision %d not found", replacement)
		}
		if rep.Retracted != nil {
			return 0, gatehouse.Errorf(gatehouse.EINVALID, "replacement revision %d is retracted itself", replacement)
		}
	}
	res, err := t.exec(`UPDATE env_revisions SET retracted = ?, retract_replacement = ?, retracted_by = ?, retract_reason = ? WHERE env_id = ? AND number = ? AND retracted = 0`,
		ns(t.now), replacement, login, reason, envID, number)
	if err != nil {
		return 0, dbErr(err)
	}
	if affected(res) == 0 {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "revision %d is already retracted", number)
	}
	if _, err := t.exec(`UPDATE env_tags SET revision = ?, modified = ?, editor_login = ? WHERE env_id = ? AND revision = ?`, replacement, ns(t.now), login, envID, number); err != nil {
		return 0, dbErr(err)
	}
	// Sessions opened on the revision end with it: its values are no longer readable.
	if _, err := t.exec(`DELETE FROM env_sessions WHERE env_id = ? AND revision = ?`, envID, number); err != nil {
		return 0, dbErr(err)
	}
	return replacement, nil
}

func (t *tx) ListEnvRevisions(envID int64, before, count int) ([]gatehouse.EnvRevision, error) {
	if before <= 0 {
		before = 1 << 62
	}
	if count <= 0 || count > 1000 {
		count = 1000
	}
	scan := func(sc scanner) (*gatehouse.EnvRevision, error) {
		r := gatehouse.EnvRevision{EnvID: envID}
		var created int64
		var rt retraction
		if err := sc.Scan(&r.Number, &created, &r.CreatorLogin, &rt.at, &rt.replacement, &rt.by, &rt.reason); err != nil {
			return nil, err
		}
		r.Created, r.Retracted = fromNS(created), rt.get()
		return &r, nil
	}
	out, err := queryAll(t, scan, `SELECT number, created, creator_login, retracted, retract_replacement, retracted_by, retract_reason FROM env_revisions WHERE env_id = ? AND number < ? ORDER BY number DESC LIMIT ?`, envID, before, count)
	if err != nil {
		return nil, err
	}
	tags, err := t.ListEnvTags(envID)
	if err != nil {
		return nil, err
	}
	for i := range out {
		for _, tg := range tags {
			if tg.Revision == out[i].Number {
				out[i].Tags = append(out[i].Tags, tg.Name)
			}
		}
	}
	return out, nil
}

func (t *tx) revisionExists(envID int64, number int) error {
	var retracted int64
	if err := t.queryRow(`SELECT retracted FROM env_revisions WHERE env_id = ? AND number = ?`, envID, number).Scan(&retracted); err != nil {
		return one(err, "revision "+strconv.Itoa(number)+" not found")
	}
	if retracted != 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "revision %d is retracted: a tag cannot name it", number)
	}
	return nil
}

func (t *tx) CreateEnvTag(tg *gatehouse.EnvTag) error {
	if err := t.revisionExists(tg.EnvID, tg.Revision); err != nil {
		return err
	}
	tg.Created, tg.Modified = t.now, t.now
	_, err := t.exec(`INSERT INTO env_tags (env_id, name, revision, created, modified, editor_login) VALUES (?, ?, ?, ?, ?, ?)`,
		tg.EnvID, tg.Name, tg.Revision, ns(t.now), ns(t.now), tg.EditorLogin)
	return t.conflictOr(err, "tag '"+tg.Name+"' already exists")
}

func (t *tx) UpdateEnvTag(envID int64, name string, revision int, login string) error {
	if err := t.revisionExists(envID, revision); err != nil {
		return err
	}
	r, err := t.exec(`UPDATE env_tags SET revision = ?, modified = ?, editor_login = ? WHERE env_id = ? AND name = ?`, revision, ns(t.now), login, envID, name)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "tag '%s' not found", name)
	}
	return nil
}

func (t *tx) GetEnvTag(envID int64, name string) (*gatehouse.EnvTag, error) {
	tg := gatehouse.EnvTag{EnvID: envID, Name: name}
	var created, modified int64
	if err := t.queryRow(`SELECT revision, created, modified, editor_login FROM env_tags WHERE env_id = ? AND name = ?`, envID, name).Scan(&tg.Revision, &created, &modified, &tg.EditorLogin); err != nil {
		return nil, one(err, "tag '"+name+"' not found")
	}
	tg.Created, tg.Modified = fromNS(created), fromNS(modified)
	return &tg, nil
}

func (t *tx) ListEnvTags(envID int64) ([]gatehouse.EnvTag, error) {
	scan := func(sc scanner) (*gatehouse.EnvTag, error) {
		tg := gatehouse.EnvTag{EnvID: envID}
		var created, modified int64
		if err := sc.Scan(&tg.Name, &tg.Revision, &created, &modified, &tg.EditorLogin); err != nil {
			return nil, err
		}
		tg.Created, tg.Modified = fromNS(created), fromNS(modified)
		return &tg, nil
	}
	return queryAll(t, scan, `SELECT name, revision, created, modified, editor_login FROM env_tags WHERE env_id = ? ORDER BY name`, envID)
}

func (t *tx) DeleteEnvTag(envID int64, name string) error {
	r, err := t.exec(`DELETE FROM env_tags WHERE env_id = ? AND name = ?`, envID, name)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "tag '%s' not found", name)
	}
	return nil
}

func (t *tx) CreateEnvSession(s *gatehouse.EnvSession) error {
	s.Created = t.now
	// Expired sessions of any environment go on the way (they are unreadable anyway).
	if _, err := t.exec(`DELETE FROM env_sessions WHERE expires <= ?`, ns(t.now)); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO env_sessions (id, org_id, env_id, revision, owner, data, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.OrgID, s.EnvID, s.Revision, s.Owner, s.Data, ns(s.Created), ns(s.Expires))
	return t.conflictOr(err, "session id collision")
}

func (t *tx) GetEnvSession(id string) (*gatehouse.EnvSession, error) {
	s := gatehouse.EnvSession{ID: id}
	var created, expires int64
	if err := t.queryRow(`SELECT org_id, env_id, revision, owner, data, created, expires FROM env_sessions WHERE id = ? AND expires > ?`, id, ns(t.now)).
		Scan(&s.OrgID, &s.EnvID, &s.Revision, &s.Owner, &s.Data, &created, &expires); err != nil {
		return nil, one(err, "open session not found or expired")
	}
	s.Created, s.Expires = fromNS(created), fromNS(expires)
	return &s, nil
}

func (t *tx) GetEnvKey(envID int64) ([]byte, error) { return t.getDataKey(envKeys, envID) }

func (t *tx) CreateEnvKey(envID int64, wrapped []byte) ([]byte, error) {
	return t.createDataKey(envKeys, envID, wrapped)
}

func (t *tx) ListEnvKeys() ([]gatehouse.EnvKey, error) {
	var out []gatehouse.EnvKey
	err := t.listDataKeys(envKeys, func(id int64, w []byte) { out = append(out, gatehouse.EnvKey{EnvID: id, Wrapped: w}) })
	return out, err
}

func (t *tx) ReplaceEnvKey(envID int64, oldWrapped, newWrapped []byte) error {
	return t.replaceDataKey(envKeys, envID, oldWrapped, newWrapped)
}
