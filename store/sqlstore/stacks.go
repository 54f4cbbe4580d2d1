package sqlstore

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

const stackCols = `s.id, s.org_id, o.name, s.project, s.name, s.tags, s.version, s.active_update, s.resource_count, s.last_update, s.created, s.created_by, s.creator_user_id,
	(SELECT COUNT(*) FROM stack_configs c WHERE c.stack_id = s.id)`

const stackFrom = ` FROM stacks s JOIN orgs o ON o.id = s.org_id`

func scanStack(sc interface{ Scan(...any) error }) (*gatehouse.Stack, error) {
	var s gatehouse.Stack
	var tags string
	var lastUpdate, created, configs int64
	if err := sc.Scan(&s.ID, &s.OrgID, &s.OrgName, &s.Project, &s.Name, &tags, &s.Version, &s.ActiveUpdate,
		&s.ResourceCount, &lastUpdate, &created, &s.CreatedBy, &s.CreatorUserID, &configs); err != nil {
		return nil, err
	}
	s.RemoteConfig = configs > 0
	if err := json.Unmarshal([]byte(tags), &s.Tags); err != nil {
		return nil, err
	}
	if s.Tags == nil {
		s.Tags = map[string]string{}
	}
	s.LastUpdate = fromNS(lastUpdate)
	s.Created = fromNS(created)
	return &s, nil
}

func (t *tx) CreateStack(s *gatehouse.Stack) error {
	s.Created = t.now
	if s.Tags == nil {
		s.Tags = map[string]string{}
	}
	tags, err := json.Marshal(s.Tags)
	if err != nil {
		return err
	}
	err = t.queryRow(`INSERT INTO stacks (org_id, project, name, tags, created, created_by, creator_user_id) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		s.OrgID, s.Project, s.Name, string(tags), ns(s.Created), s.CreatedBy, s.CreatorUserID).Scan(&s.ID)
	if err := t.conflictOr(err, "stack '"+s.Ref().String()+"' already exists"); err != nil {
		return err
	}
	return t.writeTagRows(s.ID, s.Tags)
}

func (t *tx) writeTagRows(stackID int64, tags map[string]string) error {
	if _, err := t.exec(`DELETE FROM stack_tags WHERE stack_id = ?`, stackID); err != nil {
		return err
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if _, err := t.exec(`INSERT INTO stack_tags (stack_id, name, value) VALUES (?, ?, ?)`, stackID, k, tags[k]); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) GetStack(orgID int64, project, name string) (*gatehouse.Stack, error) {
	s, err := scanStack(t.queryRow(`SELECT `+stackCols+stackFrom+` WHERE s.org_id = ? AND s.project = ? AND s.name = ?`, orgID, project, name))
	if err != nil {
		return nil, one(err, "stack not found")
	}
	return s, nil
}

func (t *tx) GetStackByID(id int64) (*gatehouse.Stack, error) {
	s, err := scanStack(t.queryRow(`SELECT `+stackCols+stackFrom+` WHERE s.id = ?`, id))
	if err != nil {
		return nil, one(err, "stack not found")
	}
	return s, nil
}

// idPage reads a listing's page size (at most 1,000) and its continuation token (the last
// row ID of the previous page).
func idPage(limit int, continuation string) (int, int64, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var after int64
	if continuation != "" {
		v, err := strconv.ParseInt(continuation, 10, 64)
		if err != nil || v < 0 {
			return 0, 0, gatehouse.Errorf(gatehouse.EINVALID, "invalid continuation token")
		}
		after = v
	}
	return limit, after, nil
}

// cutIDPage cuts a page read with LIMIT limit+1 (limit from idPage) to limit rows; next
// is the continuation token (the last kept row's ID) when a further row was read, else "".
func cutIDPage[T any](out []T, limit int, id func(*T) int64) (page []T, next string) {
	if len(out) <= limit {
		return out, ""
	}
	out = out[:limit]
	return out, strconv.FormatInt(id(&out[limit-1]), 10)
}

// appendInList writes the placeholders of an IN (...) list of ids to b and returns args with
// the ids appended.
func appendInList(b *strings.Builder, args []any, ids []int64) []any {
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?")
		args = append(args, id)
	}
	return args
}

func (t *tx) ListStacks(f gatehouse.StackFilter) ([]gatehouse.Stack, string, error) {
	if len(f.OrgIDs) == 0 {
		return nil, "", nil
	}
	limit, after, err := idPage(f.Limit, f.Continuation)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	args := make([]any, 0, len(f.OrgIDs)+5)
	b.WriteString(`SELECT ` + stackCols + stackFrom + ` WHERE s.org_id IN (`)
	args = appendInList(&b, args, f.OrgIDs)
	b.WriteString(") AND s.id > ?")
	args = append(args, after)
	if f.Project != "" {
		b.WriteString(" AND s.project = ?")
		args = append(args, f.Project)
	}
	if f.TagName != "" {
		b.WriteString(" AND EXISTS (SELECT 1 FROM stack_tags g WHERE g.stack_id = s.id AND g.name = ?")
		args = append(args, f.TagName)
		if f.TagValue != "" {
			b.WriteString(" AND g.value = ?")
			args = append(args, f.TagValue)
		}
		b.WriteString(")")
	}
	b.WriteString(" ORDER BY s.id LIMIT ?")
	args = append(args, limit+1)
	out, err := queryAll(t, scanStack, b.String(), args...)
	if err != nil {
		return nil, "", err
	}
	out, next := cutIDPage(out, limit, func(s *gatehouse.Stack) int64 { return s.ID })
	return out, next, nil
}

func (t *tx) ProjectExists(orgID int64, project string) (bool, error) {
	var n int
	err := t.queryRow(`SELECT COUNT(*) FROM stacks WHERE org_id = ? AND project = ?`, orgID, project).Scan(&n)
	return n > 0, dbErr(err)
}

func (t *tx) DeleteStack(id int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	// Children go explicitly (not only by ON DELETE CASCADE) so that no engine setting can
	// leave orphans behind.
	for _, q := range []string{
		`DELETE FROM engine_events WHERE update_id IN (SELECT id FROM updates WHERE stack_id = ?)`,
		`DELETE FROM journal_entries WHERE update_id IN (SELECT id FROM updates WHERE stack_id = ?)`,
		`DELETE FROM update_protocols WHERE update_id IN (SELECT id FROM updates WHERE stack_id = ?)`,
		`DELETE FROM updates WHERE stack_id = ?`,
		`DELETE FROM stack_protocol_profiles WHERE stack_id = ?`,
		`DELETE FROM checkpoints WHERE stack_id = ?`,
		`DELETE FROM stack_tags WHERE stack_id = ?`,
		`DELETE FROM stack_keys WHERE stack_id = ?`,
		`DELETE FROM stack_configs WHERE stack_id = ?`,
		`DELETE FROM grants WHERE stack_id = ?`,
		`DELETE FROM protections WHERE stack_id = ?`,
		`DELETE FROM policy_results WHERE stack_id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	if err := t.deleteStackWebhooks(id); err != nil {
		return err
	}
	if err := t.deleteStackDeployments(id); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM stacks WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	return nil
}

func (t *tx) RenameStack(id int64, project, name string) error {
	r, err := t.exec(`UPDATE stacks SET project = ?, name = ? WHERE id = ?`, project, name, id)
	if err := t.conflictOr(err, "stack '"+project+"/"+name+"' already exists"); err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	return nil
}

func (t *tx) SetStackTags(id int64, tags map[string]string) error {
	if tags == nil {
		tags = map[string]string{}
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return err
	}
	r, err := t.exec(`UPDATE stacks SET tags = ? WHERE id = ?`, string(b), id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	return t.writeTagRows(id, tags)
}

// --- stack keys ---

func (t *tx) GetStackKey(stackID int64) ([]byte, error) { return t.getDataKey(stackKeys, stackID) }

func (t *tx) CreateStackKey(stackID int64, wrapped []byte) ([]byte, error) {
	return t.createDataKey(stackKeys, stackID, wrapped)
}

func (t *tx) ListStackKeys() ([]gatehouse.StackKey, error) {
	var out []gatehouse.StackKey
	err := t.listDataKeys(stackKeys, func(id int64, w []byte) { out = append(out, gatehouse.StackKey{StackID: id, Wrapped: w}) })
	return out, err
}

func (t *tx) ReplaceStackKey(stackID int64, oldWrapped, newWrapped []byte) error {
	return t.replaceDataKey(stackKeys, stackID, oldWrapped, newWrapped)
}

// dataKeyTable is a table of wrapped data keys, one per owner: a stack, an environment.
type dataKeyTable struct{ table, owner, what string }

var (
	stackKeys = dataKeyTable{table: "stack_keys", owner: "stack_id", what: "stack"}
	envKeys   = dataKeyTable{table: "env_keys", owner: "env_id", what: "environment"}
)

func (t *tx) getDataKey(k dataKeyTable, id int64) ([]byte, error) {
	var w []byte
	if err := t.queryRow(`SELECT wrapped FROM `+k.table+` WHERE `+k.owner+` = ?`, id).Scan(&w); err != nil {
		return nil, one(err, "no data key for the "+k.what)
	}
	return w, nil
}

// createDataKey stores wrapped unless the owner has a key; it returns the key stored
// afterwards (the winner of a race between processes).
func (t *tx) createDataKey(k dataKeyTable, id int64, wrapped []byte) ([]byte, error) {
	if _, err := t.exec(`INSERT INTO `+k.table+` (`+k.owner+`, wrapped) VALUES (?, ?) ON CONFLICT (`+k.owner+`) DO NOTHING`, id, wrapped); err != nil {
		return nil, err
	}
	return t.getDataKey(k, id)
}

func (t *tx) listDataKeys(k dataKeyTable, each func(id int64, wrapped []byte)) error {
	rows, err := t.query(`SELECT ` + k.owner + `, wrapped FROM ` + k.table + ` ORDER BY ` + k.owner)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var w []byte
		if err := rows.Scan(&id, &w); err != nil {
			return dbErr(err)
		}
		each(id, w)
	}
	return dbErr(rows.Err())
}

// replaceDataKey swaps the owner's wrapped key if it is still oldWrapped (key rotation).
func (t *tx) replaceDataKey(k dataKeyTable, id int64, oldWrapped, newWrapped []byte) error {
	r, err := t.exec(`UPDATE `+k.table+` SET wrapped = ? WHERE `+k.owner+` = ? AND wrapped = ?`, newWrapped, id, oldWrapped)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "the %s's data key changed during rotation", k.what)
	}
	return nil
}

// --- checkpoints ---

func (t *tx) PutCheckpoint(stackID int64, version int, data []byte) error {
	data, blobKey, err := t.checkpointRow(data) // large ones go to the blob store first (blobs.go)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO checkpoints (stack_id, version, data, blob_key, created) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (stack_id, version) DO UPDATE SET data = excluded.data, blob_key = excluded.blob_key, created = excluded.created, format = 'raw', base_version = 0`,
		stackID, version, data, blobKey, ns(t.now))
	return err
}

func (t *tx) GetCheckpoint(stackID int64, version int) ([]byte, int, error) {
	var data []byte
	var v int
	var blobKey, format string
	var base int
	var err error
	if version < 0 {
		err = t.queryRow(`SELECT data, version, blob_key, format, base_version FROM checkpoints WHERE stack_id = ? ORDER BY version DESC LIMIT 1`, stackID).Scan(&data, &v, &blobKey, &format, &base)
	} else {
		err = t.queryRow(`SELECT data, version, blob_key, format, base_version FROM checkpoints WHERE stack_id = ? AND version <= ? ORDER BY version DESC LIMIT 1`, stackID, version).Scan(&data, &v, &blobKey, &format, &base)
	}
	if err != nil {
		return nil, 0, one(err, "no checkpoint")
	}
	if data, err = t.checkpointData(data, blobKey); err != nil {
		return nil, 0, err
	}
	if data, err = t.unpackCheckpoint(stackID, data, format, base); err != nil { // pack.go
		return nil, 0, err
	}
	return data, v, nil
}
