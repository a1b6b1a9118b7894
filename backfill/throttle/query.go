package throttle

import (
	"context"
	"fmt"
)

// Query is a custom signal: an SQL query returning one number (one row,
// one column, such as a queue's depth or a replica's own lag), against
// Max and Critical. A query that fails, returns no row or NULL cannot be
// read: the run pauses (fail closed).
type Query struct {
	// Label names the signal "query:Label".
	Label string
	DB    Querier
	SQL   string
	Threshold
}

// Name is "query:Label".
func (q *Query) Name() string { return "query:" + q.Label }

// Read runs the query.
func (q *Query) Read(ctx context.Context) (Reading, error) {
	var v *float64
	if err := q.DB.QueryRow(ctx, "SELECT ("+q.SQL+")::float8").Scan(&v); err != nil {
		return Reading{}, fmt.Errorf("run the query: %w", err)
	}
	if v == nil {
		return Reading{}, fmt.Errorf("the query returned NULL or no row; it must return one number")
	}
	return q.Threshold.level(q.Name(), *v, number), nil
}
