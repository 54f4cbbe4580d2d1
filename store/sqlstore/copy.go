package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Table-level access for `gatehouse migrate`: copying a whole database to another one (any
// engine to any engine) with every ID preserved, and a checksum per table that both engines
// compute alike, so that a copy can be proven complete.

// copyTable is one table of the schema, in dependency order (a table comes after every
// table it references).
type copyTable struct {
	name string
	// key is the primary key: rows are copied and checksummed in its order.
	key []string
	// serial: the table's "id" is generated (@ID@); the target's generator is moved past the
	// source's, so that no ID is ever handed out twice (a stack's ID is bound into its secrets).
	serial bool
	// bookkeeping: rows a freshly migrated, never used database may already hold (the
	// singleton rows, a keyring canary); they are replaced by the source's. Every other
	// table must be empty on the target.
	bookkeeping bool
}

var copyTables = []copyTable{
	{name: "meta", key: []string{"key"}, bookkeeping: true},
	{name: "security_epoch", key: []string{"id"}, bookkeeping: true},
	{name: "orgs", key: []string{"id"}, serial: true},
	{name: "users", key: []string{"id"}, serial: true},
	{name: "members", key: []string{"org_id", "user_id"}},
	{name: "teams", key: []string{"id"}, serial: true},
	{name: "team_members", key: []string{"team_id", "user_id"}},
	{name: "tokens", key: []string{"id"}},
	{name: "stacks", key: []string{"id"}, serial: true},
	{name: "stack_tags", key: []string{"stack_id", "name"}},
	{name: "stack_keys", key: []string{"stack_id"}},
	{name: "stack_configs", key: []string{"stack_id"}},
	{name: "checkpoints", key: []string{"stack_id", "version"}},
	{name: "updates", key: []string{"id"}},
	{name: "engine_events", key: []string{"update_id", "seq"}},
	{name: "journal_entries", key: []string{"update_id", "seq"}},
	{name: "update_protocols", key: []string{"update_id"}},
	{name: "stack_protocol_profiles", key: []string{"stack_id"}},
	{name: "environments", key: []string{"id"}, serial: true},
	{name: "env_revisions", key: []string{"env_id", "number"}},
	{name: "env_tags", key: []string{"env_id", "name"}},
	{name: "env_kv_tags", key: []string{"env_id", "name"}},
	{name: "env_sessions", key: []string{"id"}},
	{name: "env_keys", key: []string{"env_id"}},
	{name: "grants", key: []string{"id"}, serial: true},
	{name: "protections", key: []string{"id"}, serial: true},
	{name: "auth_failures", key: []string{"key"}, bookkeeping: true},
	{name: "oidc_issuers", key: []string{"id"}},
	{name: "oidc_auth_policies", key: []string{"id"}},
	{name: "oidc_exchanged_tokens", key: []string{"org_id", "token_key"}},
	{name: "scan_deliveries", key: []string{"digest"}},
	{name: "invitations", key: []string{"id"}},
	{name: "webhooks", key: []string{"id"}, serial: true},
	{name: "webhook_deliveries", key: []string{"id"}, serial: true},
	{name: "scim_tokens", key: []string{"org_id"}},
	{name: "scim_users", key: []string{"org_id", "user_id"}},
	{name: "scim_teams", key: []string{"team_id"}},
	{name: "saml_configs", key: []string{"org_id"}},
	{name: "saml_requests", key: []string{"id"}},
	{name: "saml_assertions", key: []string{"org_id", "assertion_key"}},
	{name: "deploy_settings", key: []string{"stack_id"}},
	{name: "deploy_pools", key: []string{"id"}},
	{name: "deployments", key: []string{"id"}},
	{name: "deploy_logs", key: []string{"deployment_id", "seq"}},
	{name: "deploy_comments", key: []string{"stack_id", "pr_key"}},
	{name: "deploy_vcs_secrets", key: []string{"org_id", "provider"}},
	{name: "policy_packs", key: []string{"id"}, serial: true},
	{name: "policy_urls", key: []string{"digest"}},
	{name: "policy_groups", key: []string{"id"}, serial: true},
	{name: "policy_results", key: []string{"id"}, serial: true},
	{name: "policy_settings", key: []string{"org_id"}},
	{name: "webhook_delivery_attempts", key: []string{"id"}, serial: true},
	{name: "org_sso", key: []string{"org_id"}},
	{name: "user_identities", key: []string{"issuer", "subject"}},
	{name: "sessions", key: []string{"id"}},
	{name: "sso_states", key: []string{"digest"}},
	{name: "posture_settings", key: []string{"org_id"}},
	{name: "address_ranges", key: []string{"org_id", "name"}},
	{name: "address_allowlists", key: []string{"org_id", "token_id"}},
	{name: "token_usage", key: []string{"token_id"}},
	{name: "token_usage_clients", key: []string{"token_id", "ip", "agent", "ci"}},
	{name: "token_usage_hours", key: []string{"token_id", "hour"}},
	{name: "token_usage_targets", key: []string{"token_id", "kind", "name"}},
	{name: "posture_anomalies", key: []string{"id"}, serial: true},
	{name: "audit_events", key: []string{"seq"}},
	{name: "audit_head", key: []string{"id"}, bookkeeping: true},
	{name: "audit_checkpoints", key: []string{"seq", "kind"}},
	{name: "audit_export_cursors", key: []string{"sink"}},
}

// Tables returns the names of the tables a copy carries, in the order it copies them
// (dependencies first). schema_migrations is not among them: source and target must be at
// the same schema version, which each reaches by migrating itself.
func (db *DB) Tables() []string {
	out := make([]string, len(copyTables))
	for i, t := range copyTables {
		out[i] = t.name
	}
	return out
}

// TableSum is a table's row count and checksum: SHA-256 over the table's name, its column
// names and kinds, then every row in primary-key order, each value encoded by the kind of
// its column (integer, text, bytes, NULL). Both engines compute the same sum for the same
// rows.
type TableSum struct {
	Table    string
	Rows     int64
	Checksum string // hex
}

// TableCopy reports the copy of one table: the sums of the rows read from the source and
// of the rows read back from the target afterwards.
type TableCopy struct {
	Table  string
	Source TableSum
	Target TableSum
}

// OK reports whether the target holds exactly the source's rows.
func (c TableCopy) OK() bool {
	return c.Source.Rows == c.Target.Rows && c.Source.Checksum == c.Target.Checksum
}

// column kinds, as both engines' declared types map onto them.
const (
	kindInt   = 'i'
	kindText  = 's'
	kindBytes = 'b'
)

type column struct {
	name string
	kind byte
}

// tablePlan is a table's columns, checked equal on both sides.
type tablePlan struct {
	copyTable
	cols []column
}

func (p *tablePlan) colList() string {
	names := make([]string, len(p.cols))
	for i, c := range p.cols {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func (p *tablePlan) selectAll() string {
	return `SELECT ` + p.colList() + ` FROM ` + p.name + ` ORDER BY ` + strings.Join(p.key, ", ")
}

// queryer is what *sql.DB, *sql.Tx and *sql.Conn share.
type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// existingTables lists the database's tables (but schema_migrations and the engine's own).
func (db *DB) existingTables(ctx context.Context, q queryer) ([]string, error) {
	var query string
	switch db.d.Name {
	case "sqlite":
		query = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`
	case "postgres":
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	default:
		return nil, fmt.Errorf("copy: engine %s is not supported", db.d.Name)
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if n != "schema_migrations" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, rows.Err()
}

// schemaVersion is the newest migration applied.
func schemaVersion(ctx context.Context, q queryer) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// columns reads a table's columns and their kinds.
func (db *DB) columns(ctx context.Context, q queryer, table string) ([]column, error) {
	return columnKinds(ctx, q, table)
}

func columnKinds(ctx context.Context, q queryer, table string) ([]column, error) {
	rows, err := q.QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	out := make([]column, len(types))
	for i, ct := range types {
		k, err := kindOf(ct.DatabaseTypeName())
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", table, ct.Name(), err)
		}
		out[i] = column{name: ct.Name(), kind: k}
	}
	return out, rows.Err()
}

func kindOf(declared string) (byte, error) {
	t := strings.ToUpper(declared)
	switch {
	case strings.Contains(t, "INT"):
		return kindInt, nil
	case strings.Contains(t, "BLOB"), strings.Contains(t, "BYTEA"):
		return kindBytes, nil
	case strings.Contains(t, "TEXT"), strings.Contains(t, "CHAR"):
		return kindText, nil
	}
	return 0, fmt.Errorf("unsupported column type %q", declared)
}

// plan checks that the schema of db (read through q) is the one the copier knows and
// returns the tables with their columns.
func (db *DB) plan(ctx context.Context, q queryer) ([]tablePlan, error) {
	have, err := db.existingTables(ctx, q)
	if err != nil {
		return nil, err
	}
	known := db.Tables()
	slices.Sort(known)
	if !slices.Equal(have, known) {
		var extra, missing []string
		for _, n := range have {
			if !slices.Contains(known, n) {
				extra = append(extra, n)
			}
		}
		for _, n := range known {
			if !slices.Contains(have, n) {
				missing = append(missing, n)
			}
		}
		return nil, fmt.Errorf("copy: the %s database's tables are not the ones this gatehouse copies (unknown: %v, missing: %v)", db.d.Name, extra, missing)
	}
	out := make([]tablePlan, len(copyTables))
	for i, t := range copyTables {
		cols, err := db.columns(ctx, q, t.name)
		if err != nil {
			return nil, fmt.Errorf("copy: %w", err)
		}
		out[i] = tablePlan{copyTable: t, cols: cols}
	}
	return out, nil
}

// samePlan checks that source and target have the same columns of the same kinds; the
// columns are then read and written in the source's order on both sides.
func samePlan(src, dst []tablePlan) error {
	for i := range src {
		s, d := src[i], dst[i]
		if len(s.cols) != len(d.cols) {
			return fmt.Errorf("copy: table %s has %d columns on the source, %d on the target", s.name, len(s.cols), len(d.cols))
		}
		for _, c := range s.cols {
			j := slices.IndexFunc(d.cols, func(x column) bool { return x.name == c.name })
			if j < 0 || d.cols[j].kind != c.kind {
				return fmt.Errorf("copy: table %s column %s differs between source and target", s.name, c.name)
			}
		}
	}
	return nil
}

// readTx begins a read-only transaction that sees one snapshot of the whole database.
func (db *DB) readTx(ctx context.Context) (*sql.Tx, error) {
	if db.d.Name == "postgres" {
		return db.r.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	}
	// SQLite: a transaction in WAL mode reads one snapshot from its first read on.
	return db.r.BeginTx(ctx, nil)
}

// summer computes a table's checksum.
type summer struct {
	h    hash.Hash
	rows int64
	buf  []byte
}

func newSummer(p *tablePlan) *summer {
	s := &summer{h: sha256.New()}
	s.text(p.name)
	for _, c := range p.cols {
		s.text(c.name)
		s.buf = append(s.buf[:0], c.kind)
		s.h.Write(s.buf)
	}
	return s
}

func (s *summer) text(v string) {
	s.buf = append(s.buf[:0], kindText)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(v)))
	s.h.Write(s.buf)
	s.h.Write([]byte(v))
}

// row adds one row of normalized values (see normalize).
func (s *summer) row(vals []any) {
	s.rows++
	s.buf = append(s.buf[:0], 'r')
	s.h.Write(s.buf)
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			s.buf = append(s.buf[:0], 'n')
			s.h.Write(s.buf)
		case int64:
			s.buf = append(s.buf[:0], kindInt)
			s.buf = binary.BigEndian.AppendUint64(s.buf, uint64(x))
			s.h.Write(s.buf)
		case string:
			s.text(x)
		case []byte:
			s.buf = append(s.buf[:0], kindBytes)
			s.buf = binary.AppendUvarint(s.buf, uint64(len(x)))
			s.h.Write(s.buf)
			s.h.Write(x)
		}
	}
}

func (s *summer) sum(table string) TableSum {
	return TableSum{Table: table, Rows: s.rows, Checksum: hex.EncodeToString(s.h.Sum(nil))}
}

// normalize turns a driver value into the Go type of its column's kind (int64, string or
// []byte; nil for NULL), whatever the engine returned (SQLite's columns hold any type).
func normalize(c column, v any) (any, error) {
	kind := c.kind
	if v == nil {
		return nil, nil
	}
	switch kind {
	case kindInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case int:
			return int64(x), nil
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		case float64:
			if x == float64(int64(x)) {
				return int64(x), nil
			}
		case string:
			return strconv.ParseInt(x, 10, 64)
		case []byte:
			return strconv.ParseInt(string(x), 10, 64)
		}
	case kindText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	case kindBytes:
		switch x := v.(type) {
		case []byte:
			if x == nil {
				return []byte{}, nil // a zero-length BLOB (SQLite reads it as a nil slice), not NULL
			}
			return x, nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("a %T value in a column of kind %c", v, kind)
}

// scanRows reads the table's rows in key order, normalized, calling fn for each.
func scanRows(ctx context.Context, q queryer, rebind func(string) string, p *tablePlan, fn func(vals []any) error) error {
	rows, err := q.QueryContext(ctx, rebind(p.selectAll()))
	if err != nil {
		return err
	}
	defer rows.Close()
	raw := make([]any, len(p.cols))
	ptrs := make([]any, len(p.cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		vals := make([]any, len(p.cols))
		for i, c := range p.cols {
			v, err := normalize(c, raw[i])
			if err != nil {
				return fmt.Errorf("table %s column %s: %w", p.name, c.name, err)
			}
			vals[i] = v
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Checksums computes every table's row count and checksum from one snapshot.
func (db *DB) Checksums(ctx context.Context) ([]TableSum, error) {
	tx, err := db.readTx(ctx)
	if err != nil {
		return nil, dbErr(err)
	}
	defer tx.Rollback()
	plans, err := db.plan(ctx, tx)
	if err != nil {
		return nil, err
	}
	return db.checksums(ctx, tx, plans)
}

func (db *DB) checksums(ctx context.Context, q queryer, plans []tablePlan) ([]TableSum, error) {
	out := make([]TableSum, len(plans))
	for i := range plans {
		p := &plans[i]
		s := newSummer(p)
		if err := scanRows(ctx, q, db.rebind, p, func(vals []any) error { s.row(vals); return nil }); err != nil {
			return nil, fmt.Errorf("checksum of %s: %w", p.name, err)
		}
		out[i] = s.sum(p.name)
	}
	return out, nil
}

// occupied returns the row counts of the tables that must be empty on a copy's target
// (only those that hold rows).
func (db *DB) occupied(ctx context.Context, q queryer) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range copyTables {
		if t.bookkeeping {
			continue
		}
		var n int64
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			out[t.name] = n
		}
	}
	return out, nil
}

// notEmpty is the refusal of a target that holds data.
func notEmpty(counts map[string]int64) error {
	var parts []string
	// The tables people know first.
	for _, t := range copyTables {
		if n, ok := counts[t.name]; ok {
			parts = append(parts, fmt.Sprintf("%s: %d", t.name, n))
		}
	}
	return gatehouse.Errorf(gatehouse.ECONFLICT, "the target database is not empty (%s): gatehouse migrate copies only into a new, empty database; nothing was changed", strings.Join(parts, ", "))
}

// CheckEmpty fails with ECONFLICT, naming what it holds, when the database holds any data a
// copy would overwrite (organizations, users, stacks, tokens, audit events, ...).
func (db *DB) CheckEmpty(ctx context.Context) error {
	counts, err := db.occupied(ctx, db.r)
	if err != nil {
		return dbErr(err)
	}
	if len(counts) > 0 {
		return notEmpty(counts)
	}
	return nil
}

// Copy limits: rows per INSERT are bounded by the engines' parameter limits (SQLite 32766,
// PostgreSQL 65535) and by size.
const (
	copyMaxParams = 30000
	copyMaxBytes  = 8 << 20
)

// CopyTo copies every table of db into dst, a database of the same schema version that
// holds no data (else ECONFLICT and nothing changes), in one transaction on dst, with every
// row and ID as it is: the keyring canary, the security epoch, the audit chain's events and
// head byte for byte. It moves dst's ID generators past db's. The source is read from one
// snapshot (stop the servers of both databases first all the same). After the commit it
// reads dst back and compares every table's row count and checksum with what it read from
// db; the report lists both per table, and a difference is an error.
//
// Checkpoints kept in object storage (see SetBlobStore) are copied as references: serve the
// target with the same blob store.
func (db *DB) CopyTo(ctx context.Context, dst *DB) ([]TableCopy, error) {
	if db == dst {
		return nil, errors.New("copy: source and target are the same database")
	}
	src, err := db.readTx(ctx)
	if err != nil {
		return nil, dbErr(err)
	}
	defer src.Rollback()
	splans, err := db.plan(ctx, src)
	if err != nil {
		return nil, err
	}
	sv, err := schemaVersion(ctx, src)
	if err != nil {
		return nil, dbErr(err)
	}

	tx, err := dst.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, dbErr(err)
	}
	defer tx.Rollback()
	dplans, err := dst.plan(ctx, tx)
	if err != nil {
		return nil, err
	}
	dv, err := schemaVersion(ctx, tx)
	if err != nil {
		return nil, dbErr(err)
	}
	if sv != dv {
		return nil, fmt.Errorf("copy: the source's schema is version %d, the target's %d: open both with the same gatehouse", sv, dv)
	}
	if err := samePlan(splans, dplans); err != nil {
		return nil, err
	}
	counts, err := dst.occupied(ctx, tx)
	if err != nil {
		return nil, dbErr(err)
	}
	if len(counts) > 0 {
		return nil, notEmpty(counts)
	}
	for _, t := range copyTables {
		if t.bookkeeping {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t.name); err != nil {
				return nil, dbErr(err)
			}
		}
	}

	report := make([]TableCopy, len(splans))
	for i := range splans {
		p := &splans[i]
		sum, err := db.copyTable(ctx, src, tx, dst, p)
		if err != nil {
			return nil, fmt.Errorf("copy: table %s: %w", p.name, err)
		}
		report[i] = TableCopy{Table: p.name, Source: sum}
		if p.serial {
			hw, err := db.highWater(ctx, src, p.name)
			if err != nil {
				return nil, fmt.Errorf("copy: table %s: reading its ID generator: %w", p.name, err)
			}
			if err := dst.setHighWater(ctx, tx, p.name, hw); err != nil {
				return nil, fmt.Errorf("copy: table %s: moving its ID generator: %w", p.name, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, dbErr(err)
	}
	_ = src.Rollback()

	// Read the target back, from a snapshot of its own.
	rtx, err := dst.readTx(ctx)
	if err != nil {
		return report, dbErr(err)
	}
	defer rtx.Rollback()
	sums, err := dst.checksums(ctx, rtx, splans) // the source's column order
	if err != nil {
		return report, err
	}
	var bad []string
	for i := range report {
		report[i].Target = sums[i]
		if !report[i].OK() {
			bad = append(bad, fmt.Sprintf("%s (source %d rows %s, target %d rows %s)", report[i].Table,
				report[i].Source.Rows, report[i].Source.Checksum[:12], report[i].Target.Rows, report[i].Target.Checksum[:12]))
		}
	}
	if len(bad) > 0 {
		return report, fmt.Errorf("copy: verification failed, the target differs from the source in %s: discard the target", strings.Join(bad, "; "))
	}
	return report, nil
}

// copyTable streams one table from src into tx (on dst) in batched INSERTs, returning the
// sum of the rows read.
func (db *DB) copyTable(ctx context.Context, src *sql.Tx, tx *sql.Tx, dst *DB, p *tablePlan) (TableSum, error) {
	s := newSummer(p)
	ncols := len(p.cols)
	perBatch := max(1, copyMaxParams/ncols)
	head := `INSERT INTO ` + p.name + ` (` + p.colList() + `) VALUES `
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncols), ", ") + ")"
	var args []any
	var size int
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		n := len(args) / ncols
		q := head + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ")
		if _, err := tx.ExecContext(ctx, dst.rebind(q), args...); err != nil {
			return err
		}
		args, size = args[:0], 0
		return nil
	}
	err := scanRows(ctx, src, db.rebind, p, func(vals []any) error {
		s.row(vals)
		args = append(args, vals...)
		for _, v := range vals {
			switch x := v.(type) {
			case string:
				size += len(x)
			case []byte:
				size += len(x)
			default:
				size += 8
			}
		}
		if len(args)/ncols >= perBatch || size >= copyMaxBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return TableSum{}, err
	}
	return s.sum(p.name), nil
}

// highWater is the highest ID the table's generator has handed out (or its highest ID, if
// greater): IDs of deleted rows count, they are never reused.
func (db *DB) highWater(ctx context.Context, q queryer, table string) (int64, error) {
	var hw int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+table).Scan(&hw); err != nil {
		return 0, err
	}
	var gen int64
	switch db.d.Name {
	case "sqlite":
		err := q.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = ?`, table).Scan(&gen)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	case "postgres":
		var seq sql.NullString
		if err := q.QueryRowContext(ctx, `SELECT pg_get_serial_sequence($1, 'id')`, table).Scan(&seq); err != nil {
			return 0, err
		}
		if seq.Valid {
			var last int64
			var called bool
			if err := q.QueryRowContext(ctx, `SELECT last_value, is_called FROM `+seq.String).Scan(&last, &called); err != nil {
				return 0, err
			}
			if called {
				gen = last
			}
		}
	}
	return max(hw, gen), nil
}

// setHighWater makes the table's generator hand out IDs above hw from now on.
func (db *DB) setHighWater(ctx context.Context, q queryer, table string, hw int64) error {
	switch db.d.Name {
	case "sqlite":
		if hw <= 0 {
			return nil
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM sqlite_sequence WHERE name = ?`, table); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)`, table, hw)
		return err
	case "postgres":
		var err error
		if hw > 0 {
			_, err = q.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), $2, true)`, table, hw)
		} else {
			_, err = q.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), 1, false)`, table)
		}
		return err
	}
	return fmt.Errorf("engine %s is not supported", db.d.Name)
}
