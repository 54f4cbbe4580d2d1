package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// tx implements gatehouse.Tx.
type tx struct {
	ctx  context.Context
	tx   *sql.Tx
	pool *sql.DB
	db   *DB
	now  time.Time

	audit auditTxState // the audit chain's head and the events not yet written (audit.go)
}

var _ gatehouse.Tx = (*tx)(nil)

func (t *tx) Now() time.Time { return t.now }

// stmt returns the transaction's handle on the cached prepared statement for q, or nil
// when q cannot be prepared and cached (then the caller runs it unprepared).
func (t *tx) stmt(q string) *sql.Stmt {
	ps := t.db.prepared(t.ctx, t.pool, q)
	if ps == nil {
		return nil
	}
	return t.tx.StmtContext(t.ctx, ps)
}

func (t *tx) exec(q string, args ...any) (sql.Result, error) {
	if st := t.stmt(q); st != nil {
		r, err := st.ExecContext(t.ctx, args...)
		return r, t.wrap(err)
	}
	r, err := t.tx.ExecContext(t.ctx, t.db.rebind(q), args...)
	return r, t.wrap(err)
}

func (t *tx) query(q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(q); st != nil {
		rows, err := st.QueryContext(t.ctx, args...)
		return rows, t.wrap(err)
	}
	rows, err := t.tx.QueryContext(t.ctx, t.db.rebind(q), args...)
	return rows, t.wrap(err)
}

// queryColumn runs a query of one column and returns its values (all rows read and closed
// before it returns, so the caller may write to the same rows next).
func queryColumn[T any](t *tx, q string, args ...any) ([]T, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, dbErr(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}

// scanner is what a scan function reads one row from: a *sql.Row or the current row of a
// *sql.Rows.
type scanner = interface{ Scan(...any) error }

// queryAll runs a query and scans each row with scan (all rows read and closed before it
// returns). No rows give a nil slice (see orEmpty). A scan error returns nil; an error
// while iterating returns the rows read so far with it. Errors are wrapped with dbErr.
func queryAll[T any](t *tx, scan func(scanner) (*T, error), q string, args ...any) ([]T, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, *v)
	}
	return out, dbErr(rows.Err())
}

// orEmpty turns a successful list without rows into an empty slice, for the lists whose
// JSON must be [] rather than null.
func orEmpty[T any](out []T, err error) ([]T, error) {
	if out == nil && err == nil {
		return []T{}, nil
	}
	return out, err
}

func (t *tx) queryRow(q string, args ...any) *sql.Row {
	if st := t.stmt(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, t.db.rebind(q), args...)
}

func (t *tx) wrap(err error) error {
	if err == nil {
		return nil
	}
	return dbErr(err)
}

// conflictOr maps a unique violation to ECONFLICT with msg.
func (t *tx) conflictOr(err error, msg string) error {
	if err == nil {
		return nil
	}
	if t.db.d.IsUnique(err) {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "%s", msg)
	}
	return dbErr(err)
}

// one scans a single row, mapping no rows to ENOTFOUND with msg.
func one(err error, msg string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "%s", msg)
	}
	return dbErr(err)
}

func affected(r sql.Result) int64 {
	n, err := r.RowsAffected()
	if err != nil {
		return 0
	}
	return n
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func digestOf(b []byte) (d [32]byte) {
	copy(d[:], b)
	return d
}

// --- meta ---

func (t *tx) GetMeta(key string) ([]byte, error) {
	var v []byte
	err := t.queryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if err != nil {
		return nil, one(err, "no meta value "+key)
	}
	return v, nil
}

func (t *tx) SetMeta(key string, value []byte) error {
	_, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (t *tx) CreateMeta(key string, value []byte) ([]byte, error) {
	if _, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
		return nil, err
	}
	return t.GetMeta(key)
}

// --- organizations ---

const orgCols = `id, name, settings, created`

func scanOrg(s interface{ Scan(...any) error }) (*gatehouse.Org, error) {
	var o gatehouse.Org
	var settings string
	var created int64
	if err := s.Scan(&o.ID, &o.Name, &settings, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(settings), &o.Settings); err != nil {
		return nil, err
	}
	o.Created = fromNS(created)
	return &o, nil
}

func (t *tx) CreateOrg(o *gatehouse.Org) error {
	settings, err := json.Marshal(o.Settings)
	if err != nil {
		return err
	}
	o.Created = t.now
	err = t.queryRow(`INSERT INTO orgs (name, name_key, settings, created) VALUES (?, ?, ?, ?) RETURNING id`,
		o.Name, strings.ToLower(o.Name), string(settings), ns(o.Created)).Scan(&o.ID)
	return t.conflictOr(err, "organization '"+o.Name+"' already exists")
}

func (t *tx) GetOrg(id int64) (*gatehouse.Org, error) {
	o, err := scanOrg(t.queryRow(`SELECT `+orgCols+` FROM orgs WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "organization not found")
	}
	return o, nil
}

func (t *tx) GetOrgByName(name string) (*gatehouse.Org, error) {
	o, err := scanOrg(t.queryRow(`SELECT `+orgCols+` FROM orgs WHERE name_key = ?`, strings.ToLower(name)))
	if err != nil {
		return nil, one(err, "organization '"+name+"' not found")
	}
	return o, nil
}

func (t *tx) ListOrgs() ([]gatehouse.Org, error) {
	return queryAll(t, scanOrg, `SELECT `+orgCols+` FROM orgs ORDER BY name_key`)
}

func (t *tx) UpdateOrgSettings(orgID int64, s gatehouse.OrgSettings) error {
	if err := t.bump(); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	r, err := t.exec(`UPDATE orgs SET settings = ? WHERE id = ?`, string(b), orgID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "organization not found")
	}
	return nil
}

// --- users and members ---

const userCols = `id, name, email, site_admin, created, created_org_id, disabled`

func scanUser(s interface{ Scan(...any) error }) (*gatehouse.User, error) {
	var u gatehouse.User
	var admin, created, disabled int64
	if err := s.Scan(&u.ID, &u.Name, &u.Email, &admin, &created, &u.CreatedByOrg, &disabled); err != nil {
		return nil, err
	}
	u.SiteAdmin = admin != 0
	u.Created = fromNS(created)
	if disabled != 0 {
		u.Disabled = fromNS(disabled)
	}
	return &u, nil
}

func (t *tx) ListUsers() ([]gatehouse.User, error) {
	return queryAll(t, scanUser, `SELECT `+userCols+` FROM users ORDER BY name_key`)
}

func (t *tx) DisableUser(id int64, at time.Time) (int, error) {
	if err := t.bump(); err != nil {
		return 0, err
	}
	r, err := t.exec(`UPDATE users SET disabled = ? WHERE id = ? AND disabled = 0`, ns(at), id)
	if err != nil {
		return 0, err
	}
	if affected(r) == 0 {
		if _, err := t.GetUser(id); err != nil {
			return 0, err
		}
		return 0, nil // already disabled
	}
	// Personal tokens: kind personal, this user. Live ones end now (a rotation's later end
	// is shortened); expired and already revoked ones keep their facts.
	r, err = t.exec(`UPDATE tokens SET revoked = ? WHERE user_id = ? AND kind = ? AND (revoked = 0 OR revoked > ?) AND (expires = 0 OR expires > ?)`,
		ns(at), id, string(gatehouse.TokenPersonal), ns(at), ns(at))
	if err != nil {
		return 0, err
	}
	return int(affected(r)), nil
}

func (t *tx) CreateUser(u *gatehouse.User) error {
	u.Created = t.now
	err := t.queryRow(`INSERT INTO users (name, name_key, email, site_admin, created, created_org_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Name, strings.ToLower(u.Name), u.Email, b2i(u.SiteAdmin), ns(u.Created), u.CreatedByOrg).Scan(&u.ID)
	return t.conflictOr(err, "user '"+u.Name+"' already exists")
}

func (t *tx) GetUser(id int64) (*gatehouse.User, error) {
	u, err := scanUser(t.queryRow(`SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "user not found")
	}
	return u, nil
}

func (t *tx) GetUserByName(name string) (*gatehouse.User, error) {
	u, err := scanUser(t.queryRow(`SELECT `+userCols+` FROM users WHERE name_key = ?`, strings.ToLower(name)))
	if err != nil {
		return nil, one(err, "user '"+name+"' not found")
	}
	return u, nil
}

func (t *tx) CountUsers() (int, error) {
	var n int
	err := t.queryRow(`SELECT COUNT(*) FROM users`).Scan(&n)
	return n, dbErr(err)
}

func (t *tx) PutMember(orgID, userID int64, role gatehouse.Role) error {
	if err := t.bump(); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO members (org_id, user_id, role, created) VALUES (?, ?, ?, ?)
		ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role`, orgID, userID, string(role), ns(t.now))
	return err
}

const memberCols = `m.org_id, m.role, m.created, u.id, u.name, u.email, u.site_admin, u.created, u.created_org_id`

func scanMember(s interface{ Scan(...any) error }) (*gatehouse.Member, error) {
	var m gatehouse.Member
	var role string
	var created, admin, ucreated int64
	if err := s.Scan(&m.OrgID, &role, &created, &m.User.ID, &m.User.Name, &m.User.Email, &admin, &ucreated, &m.User.CreatedByOrg); err != nil {
		return nil, err
	}
	m.Role = gatehouse.Role(role)
	m.Created = fromNS(created)
	m.User.SiteAdmin = admin != 0
	m.User.Created = fromNS(ucreated)
	return &m, nil
}

func (t *tx) GetMember(orgID, userID int64) (*gatehouse.Member, error) {
	m, err := scanMember(t.queryRow(`SELECT `+memberCols+` FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = ? AND m.user_id = ?`, orgID, userID))
	if err != nil {
		return nil, one(err, "not a member of the organization")
	}
	return m, nil
}

func (t *tx) ListMembers(orgID int64) ([]gatehouse.Member, error) {
	return queryAll(t, scanMember, `SELECT `+memberCols+` FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY u.name_key`, orgID)
}

func (t *tx) RemoveMember(orgID, userID int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM members WHERE org_id = ? AND user_id = ?`, orgID, userID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "not a member of the organization")
	}
	return nil
}

func (t *tx) ListUserOrgs(userID int64) ([]gatehouse.OrgMembership, error) {
	rows, err := t.query(`SELECT o.id, o.name, o.settings, o.created, m.role FROM members m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ? ORDER BY o.name_key`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []gatehouse.OrgMembership
	for rows.Next() {
		var om gatehouse.OrgMembership
		var settings, role string
		var created int64
		if err := rows.Scan(&om.Org.ID, &om.Org.Name, &settings, &created, &role); err != nil {
			return nil, dbErr(err)
		}
		if err := json.Unmarshal([]byte(settings), &om.Org.Settings); err != nil {
			return nil, err
		}
		om.Org.Created = fromNS(created)
		om.Role = gatehouse.Role(role)
		out = append(out, om)
	}
	return out, dbErr(rows.Err())
}

func isNotFound(err error) bool { return gatehouse.IsCode(err, gatehouse.ENOTFOUND) }
