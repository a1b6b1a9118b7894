package projection

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ControlSchema holds the tables shared by every projection of a database:
// control (the serving version of each projection and a swap under way),
// versions (each version's checkpoint and state), parked (events a version
// could not apply) and outbox (recorded side effects).
const ControlSchema = "rewind_proj"

var (
	outboxIdent = pgx.Identifier{ControlSchema, "outbox"}
	outboxCols  = []string{"name", "position", "seq", "version", "kind", "payload"}
)

const controlDDL = `
CREATE SCHEMA IF NOT EXISTS rewind_proj;
CREATE TABLE IF NOT EXISTS rewind_proj.control (
	name text PRIMARY KEY,
	serving int NOT NULL,
	swap_to int,
	swap_at bigint,
	swapped_at timestamptz
);
CREATE TABLE IF NOT EXISTS rewind_proj.versions (
	name text NOT NULL,
	version int NOT NULL,
	state text NOT NULL CHECK (state IN ('building', 'serving', 'retired')),
	position bigint NOT NULL DEFAULT 0,
	effects_from bigint,
	stop_at bigint,
	log_end bigint NOT NULL DEFAULT 0,
	events bigint NOT NULL DEFAULT 0,
	rate double precision NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS rewind_proj.parked (
	name text NOT NULL,
	version int NOT NULL,
	position bigint NOT NULL,
	event_id uuid NOT NULL,
	stream text NOT NULL,
	type text NOT NULL,
	kind text NOT NULL,
	error text NOT NULL,
	parked_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, version, position)
);
CREATE TABLE IF NOT EXISTS rewind_proj.outbox (
	name text NOT NULL,
	position bigint NOT NULL,
	seq int NOT NULL,
	version int NOT NULL,
	kind text NOT NULL,
	payload bytea,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	fired_at timestamptz,
	PRIMARY KEY (name, position, seq)
);
CREATE TABLE IF NOT EXISTS rewind_proj.baselines (
	name text NOT NULL,
	tag text NOT NULL,
	version int NOT NULL,
	position bigint NOT NULL,
	schema_name text NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, tag)
);
CREATE INDEX IF NOT EXISTS outbox_unfired ON rewind_proj.outbox (name, position, seq) WHERE fired_at IS NULL;
`

// EnsureControl creates the control tables if they do not exist. Runners
// call it; tools reading status call it too, so that an empty database
// reads as "no projections".
func EnsureControl(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Concurrent CREATE … IF NOT EXISTS can still collide; serialize them.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('rewind_proj'))`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, controlDDL); err != nil {
		return fmt.Errorf("projection: create the control tables: %w", err)
	}
	return tx.Commit(ctx)
}
