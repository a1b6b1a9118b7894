package backfill_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill"
)

func ExampleRunner_Apply() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, exampleDB.DSN)
	defer pool.Close()
	pool.Exec(ctx, `CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
		INSERT INTO users SELECT g, 'User' || g || '@Example.COM' FROM generate_series(1, 2500) g`)

	job := &backfill.Job{
		Name: "normalize-emails", Version: "1",
		Source: &backfill.Table{Name: "users", Key: []string{"id"}, Where: "email <> lower(email)"},
		Set:    map[string]string{"email": "lower(email)"},
	}
	r, _ := backfill.New(backfill.Config{DB: pool, Actor: "example"})

	plan, _ := r.Plan(ctx, job, backfill.PlanOptions{})
	fmt.Printf("plan: %d rows in %d chunks; %s → %s\n", plan.Rows, plan.Chunks, plan.Diffs[0].Before["email"], plan.Diffs[0].After["email"])

	res, err := r.Apply(ctx, job, backfill.ApplyOptions{PlanHash: plan.PlanHash})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("applied:", res.RowsChanged, "rows changed")

	// A job is applied once: starting it again is refused…
	_, err = r.Apply(ctx, job, backfill.ApplyOptions{})
	fmt.Println("again:", errors.Is(err, backfill.ErrAlreadyApplied))
	// …unless a new run after its last one is asked for.
	again, _ := r.Apply(ctx, job, backfill.ApplyOptions{NewRun: res.Run.ID})
	fmt.Println("new run:", again.RowsChanged, "rows changed")
	// Output:
	// plan: 2500 rows in 3 chunks; User1@Example.COM → user1@example.com
	// applied: 2500 rows changed
	// again: true
	// new run: 0 rows changed
}
