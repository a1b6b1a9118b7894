package auditpg_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/internal/pgtest"
)

var exampleDB *pgtest.DB

// TestMain gives the examples a database of their own.
func TestMain(m *testing.M) {
	code := pgtest.Main(m, &exampleDB)
	os.Exit(code)
}

// examplePool connects to the package's shared database.
func examplePool() *pgxpool.Pool {
	p, err := pgxpool.New(context.Background(), exampleDB.DSN)
	if err != nil {
		panic(err)
	}
	return p
}
