// Package pgtx is the transactional consumer for PostgreSQL sinks: the
// handler's writes and the record that the event was applied commit in
// one PostgreSQL transaction, so an event is applied exactly once however
// often it is delivered — after a crash of the member or of the engine,
// an ack wait that ran out, a replay of parked events, or two members
// holding it at once.
//
// The record is a row (group, event id) of an "applied" table. A delivery
// first inserts that row in the transaction; if it is there already the
// event was applied before, and the handler is skipped (the delivery is
// acked). Concurrent deliveries of one event serialize on the row's key,
// and the second finds it. Rows are kept until Prune removes them: prune
// only below the group's ack floor (consumer.GroupInfo.AckFloor), which no
// redelivery reaches, except through a reset or a replay of parked events
// at or before it.
package pgtx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
)

// Handler handles an event inside tx, which the consumer commits when it
// returns nil and rolls back otherwise. It must do all its PostgreSQL
// writes in tx, and nothing else with lasting effect.
type Handler func(ctx context.Context, tx pgx.Tx, m *consumer.Message) error

// DefaultTable is the applied table of a Sink made with an empty name.
const DefaultTable = "rewind_consumer_applied"

// Sink applies events to a PostgreSQL database exactly once.
type Sink struct {
	pool  *pgxpool.Pool
	table string // quoted
}

// New returns a sink writing its applied rows to table (DefaultTable when
// empty; it may be schema-qualified).
func New(pool *pgxpool.Pool, table string) *Sink {
	if table == "" {
		table = DefaultTable
	}
	return &Sink{pool: pool, table: quote(table)}
}

func quote(table string) string {
	var id pgx.Identifier
	start := 0
	for i := 0; i <= len(table); i++ {
		if i == len(table) || table[i] == '.' {
			id = append(id, table[start:i])
			start = i + 1
		}
	}
	return id.Sanitize()
}

// Setup creates the applied table if it does not exist.
func (s *Sink) Setup(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		group_name text NOT NULL,
		event_id uuid NOT NULL,
		position bigint NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (group_name, event_id))`, s.table))
	if err != nil {
		return fmt.Errorf("pgtx: create %s: %w", s.table, err)
	}
	_, err = s.pool.Exec(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (group_name, position)`,
		pgx.Identifier{"rewind_consumer_applied_position"}.Sanitize(), s.table))
	return err
}

// Handler returns a consumer.Handler that runs h and records the event as
// applied in one transaction, and skips events applied already.
func (s *Sink) Handler(h Handler) consumer.Handler {
	insert := fmt.Sprintf(`INSERT INTO %s (group_name, event_id, position) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, s.table)
	return func(ctx context.Context, m *consumer.Message) error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("pgtx: begin: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		tag, err := tx.Exec(ctx, insert, m.Group, m.Event.ID, int64(m.Event.Position))
		if err != nil {
			return fmt.Errorf("pgtx: record applied: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // applied before: ack it
		}
		if err := h(ctx, tx, m); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			// Committed or not, a redelivery finds out from the row.
			return fmt.Errorf("pgtx: commit: %w", err)
		}
		return nil
	}
}

// Applied reports whether the event with id was applied for group.
func (s *Sink) Applied(ctx context.Context, group string, id [16]byte) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, fmt.Sprintf(
		`SELECT EXISTS (SELECT 1 FROM %s WHERE group_name = $1 AND event_id = $2)`, s.table), group, id).Scan(&ok)
	return ok, err
}

// Prune deletes group's applied rows at or before position through and
// returns how many. Events at or before it are then no longer protected:
// use the group's ack floor, and do not replay or reset below it after.
func (s *Sink) Prune(ctx context.Context, group string, through rewind.Position) (int64, error) {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE group_name = $1 AND position <= $2`, s.table),
		group, int64(through))
	return tag.RowsAffected(), err
}
