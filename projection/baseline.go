package projection

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
)

// Baseline is a saved copy of a projection version's tables as of one
// position, to diff a later build against (Compare).
type Baseline struct {
	Name      string          `json:"name"`
	Tag       string          `json:"tag"`
	Version   int             `json:"version"`
	Position  rewind.Position `json:"position"`
	Schema    string          `json:"schema"`
	CreatedAt time.Time       `json:"created_at"`
}

var tagRE = regexp.MustCompile(`^[a-z0-9]{1,15}$`) // no _: projb_NAME_TAG names one baseline

// BaselineSchema returns the schema of a baseline, projb_NAME_TAG: never
// a version's schema (proj_NAME_vN; with proj_NAME_b_TAG, baseline v2 of
// projection a was version 2 of projection a_b).
func BaselineSchema(name, tag string) string { return fmt.Sprintf("projb_%s_%s", name, tag) }

// SaveBaseline copies the tables of a version of a projection into the
// schema BaselineSchema(name, tag), with the version's checkpoint, in one
// snapshot: the copy is the version's state as of that position, even
// while its runner goes on. A tag already saved is refused (drop it
// first); nothing is written then.
func SaveBaseline(ctx context.Context, pool *pgxpool.Pool, name string, version int, tag string) (Baseline, error) {
	bad := func(err error, reason string) (Baseline, error) {
		return Baseline{}, &Error{Op: "baseline", Name: name, Version: version, Err: err, Reason: reason}
	}
	switch {
	case !nameRE.MatchString(name):
		return bad(ErrBadDefinition, "the name must be 1–40 lower-case letters, digits or _, starting with a letter")
	case !tagRE.MatchString(tag):
		return bad(ErrBadDefinition, fmt.Sprintf("the tag must be 1–15 lower-case letters or digits, not %q", tag))
	}
	if err := EnsureControl(ctx, pool); err != nil {
		return Baseline{}, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return Baseline{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b := Baseline{Name: name, Tag: tag, Version: version, Schema: BaselineSchema(name, tag)}
	var pos int64
	err = tx.QueryRow(ctx, "SELECT position FROM rewind_proj.versions WHERE name = $1 AND version = $2", name, version).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return bad(ErrNotFound, "see rewind projections status NAME for its versions")
	} else if err != nil {
		return Baseline{}, err
	}
	b.Position = rewind.Position(pos)
	err = tx.QueryRow(ctx, `INSERT INTO rewind_proj.baselines (name, tag, version, position, schema_name)
		VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, name, tag, version, pos, b.Schema).Scan(&b.CreatedAt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return bad(ErrBadDefinition, fmt.Sprintf("baseline %q exists: drop it first (rewind projections baseline --drop)", tag))
	} else if err != nil {
		return Baseline{}, err
	}
	from := SchemaName(name, version)
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`, from)
	if err != nil {
		return Baseline{}, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return Baseline{}, err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+quoteSchema(b.Schema)); err != nil {
		if errors.As(err, &pe) && pe.Code == "42P06" {
			return bad(ErrBadDefinition, fmt.Sprintf("schema %s exists already: drop it, or choose another tag", b.Schema))
		}
		return Baseline{}, err
	}
	for _, t := range tables {
		src, dst := qualified(from, t), qualified(b.Schema, t)
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (LIKE %s INCLUDING ALL); INSERT INTO %s SELECT * FROM %s", dst, src, dst, src)); err != nil {
			return Baseline{}, fmt.Errorf("projection: baseline %s: copy table %s: %w", tag, t, err)
		}
	}
	return b, tx.Commit(ctx)
}

// DropBaseline drops a saved baseline: its schema and its record.
func DropBaseline(ctx context.Context, pool *pgxpool.Pool, name, tag string) error {
	if err := EnsureControl(ctx, pool); err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var schema string
	err = tx.QueryRow(ctx, "DELETE FROM rewind_proj.baselines WHERE name = $1 AND tag = $2 RETURNING schema_name", name, tag).Scan(&schema)
	if errors.Is(err, pgx.ErrNoRows) {
		return &Error{Op: "baseline", Name: name, Err: ErrNotFound, Reason: fmt.Sprintf("no baseline %q", tag)}
	} else if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+quoteSchema(schema)+" CASCADE"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
