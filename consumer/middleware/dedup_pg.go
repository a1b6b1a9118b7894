package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGDedup is a DedupStore in a PostgreSQL table, shared by every process
// of a consumer group. Create the table with Setup; delete expired keys
// with Sweep now and then.
type PGDedup struct {
	pool  *pgxpool.Pool
	table string // quoted
}

// NewPGDedup returns a store in table (created by Setup), which may be
// schema-qualified ("app.dedup").
func NewPGDedup(pool *pgxpool.Pool, table string) *PGDedup {
	return &PGDedup{pool: pool, table: quoteTable(table)}
}

func quoteTable(table string) string {
	var parts pgx.Identifier
	start := 0
	for i := 0; i <= len(table); i++ {
		if i == len(table) || table[i] == '.' {
			parts = append(parts, table[start:i])
			start = i + 1
		}
	}
	return parts.Sanitize()
}

// Setup creates the table if it does not exist.
func (s *PGDedup) Setup(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		key text PRIMARY KEY,
		expires_at timestamptz NOT NULL)`, s.table))
	return err
}

// Seen implements DedupStore.
func (s *PGDedup) Seen(ctx context.Context, key string) (bool, error) {
	var seen bool
	err := s.pool.QueryRow(ctx, fmt.Sprintf(
		`SELECT EXISTS (SELECT 1 FROM %s WHERE key = $1 AND expires_at > now())`, s.table), key).Scan(&seen)
	return seen, err
}

// Mark implements DedupStore.
func (s *PGDedup) Mark(ctx context.Context, key string, ttl time.Duration) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (key, expires_at)
		VALUES ($1, now() + $2::interval)
		ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at`, s.table), key, ttl)
	return err
}

// Sweep deletes the expired keys and returns how many.
func (s *PGDedup) Sweep(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE expires_at <= now()`, s.table))
	return tag.RowsAffected(), err
}
