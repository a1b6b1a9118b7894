package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/mask"
)

// A diff compares two builds of a projection table by table: rows are
// matched by the table's primary key, and a key whose rows differ (or
// that one side lacks) is reported with both rows as JSON. A table
// without a primary key is compared as a multiset of rows. Diff goes
// further: it replays the log into both definitions side by side and
// names, for each differing key, the first event after which its rows
// differed (fault localisation).

// KeyDiff is one key whose rows differ between the two sides.
type KeyDiff struct {
	Table string `json:"table"`
	// Key is the row's primary key as a JSON object; for a table without
	// one, the whole row.
	Key json.RawMessage `json:"key"`
	// A and B are the rows as JSON objects, null where that side has
	// none. For a table without a primary key they are the number of
	// copies of the row on each side.
	A json.RawMessage `json:"a"`
	B json.RawMessage `json:"b"`
	// FirstPosition is the first event after which the key's rows
	// differed, and FirstType its type; 0 when not localised (Compare, a
	// table without a primary key, or past DiffOptions.Limit).
	FirstPosition rewind.Position `json:"first_position,omitempty"`
	FirstType     string          `json:"first_type,omitempty"`
}

// DiffResult is what Diff and Compare found.
type DiffResult struct {
	// A and B are the schemas compared.
	A string `json:"a"`
	B string `json:"b"`
	// Position is the position both sides were built to.
	Position rewind.Position `json:"position"`
	// Events is how many events Diff replayed (0 for Compare).
	Events int64 `json:"events,omitempty"`
	// Tables are the tables compared; OnlyA and OnlyB those that one side
	// lacks (a difference too).
	Tables []string `json:"tables"`
	OnlyA  []string `json:"only_a,omitempty"`
	OnlyB  []string `json:"only_b,omitempty"`
	// Keys are the differing keys, at most Limit, ordered by table and
	// key; More is set when there were more.
	Keys []KeyDiff `json:"keys"`
	More bool      `json:"more,omitempty"`
	// Parked lists the events a side's handler failed on (they are
	// skipped on that side, as a runner parks them).
	Parked []DiffParked `json:"parked,omitempty"`
	// Masked says the handlers saw events with the sensitive fields of
	// their projection (Projection.Sensitive) masked, so the rows
	// reported hold no more than masked values; MaskKeyID names the hash
	// key (see replay/mask). MaskedEvents and MaskedValues count, over the
	// build and for both sides, the events and values masked.
	Masked       bool   `json:"masked,omitempty"`
	MaskKeyID    string `json:"mask_key_id,omitempty"`
	MaskedEvents int64  `json:"masked_events,omitempty"`
	MaskedValues int64  `json:"masked_values,omitempty"`
}

// Same reports whether the two sides are equal.
func (r *DiffResult) Same() bool {
	return len(r.Keys) == 0 && len(r.OnlyA) == 0 && len(r.OnlyB) == 0
}

// DiffParked is an event a side could not apply.
type DiffParked struct {
	Side     string          `json:"side"` // "a" or "b"
	Position rewind.Position `json:"position"`
	Type     string          `json:"type"`
	Error    string          `json:"error"`
}

// DiffOptions tunes Diff and Compare.
type DiffOptions struct {
	// To is the last position Diff replays; 0 is the end of the log when
	// Diff starts.
	To rewind.Position
	// Batch is how many events Diff applies between two checks of the
	// differing keys (default 500). A divergence that appears and heals
	// within one batch is not seen; 1 checks after every event.
	Batch int
	// Limit caps the keys reported (default 1000).
	Limit int
}

func (o *DiffOptions) defaults() {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Limit <= 0 {
		o.Limit = 1000
	}
}

// Compare compares the tables of two schemas as they are now, for
// instance two versions of a projection (SchemaName) or a version and a
// baseline saved with SaveBaseline. It reads both in one snapshot, and
// refuses two projection schemas whose checkpoints are at different
// positions (their difference would be the events between): stop their
// runners at the same position first.
func Compare(ctx context.Context, pool *pgxpool.Pool, schemaA, schemaB string, opts DiffOptions) (*DiffResult, error) {
	opts.defaults()
	if err := EnsureControl(ctx, pool); err != nil {
		return nil, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	pa, err := schemaPosition(ctx, tx, schemaA)
	if err != nil {
		return nil, err
	}
	pb, err := schemaPosition(ctx, tx, schemaB)
	if err != nil {
		return nil, err
	}
	if pa != pb {
		return nil, &Error{Op: "diff", Err: ErrBadDefinition, Reason: fmt.Sprintf(
			"%s is at position %d and %s at %d: compare them at the same position (stop their runners there, "+
				"or save a baseline of each when they are)", schemaA, pa, schemaB, pb)}
	}
	res := &DiffResult{A: schemaA, B: schemaB, Position: pa}
	tables, err := pairTables(ctx, tx, res)
	if err != nil {
		return nil, err
	}
	if err := compareAll(ctx, tx, res, tables, opts.Limit); err != nil {
		return nil, err
	}
	return res, nil
}

// schemaPosition is the checkpoint of the projection version or baseline
// whose schema is schema; it fails with ErrNotFound for a schema that is
// neither.
func schemaPosition(ctx context.Context, q pgx.Tx, schema string) (rewind.Position, error) {
	var pos int64
	err := q.QueryRow(ctx, `SELECT position FROM rewind_proj.versions WHERE 'proj_' || name || '_v' || version = $1
		UNION ALL SELECT position FROM rewind_proj.baselines WHERE schema_name = $1`, schema).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, &Error{Op: "diff", Err: ErrNotFound, Reason: fmt.Sprintf(
			"%s is neither a projection version nor a saved baseline (see rewind projections ls)", schema)}
	}
	return rewind.Position(pos), err
}

// table is a table both sides have, with its primary key columns (none:
// compared as a multiset).
type table struct {
	name string
	key  []string
}

// pairTables lists the tables of both schemas: those in both, and in
// res.OnlyA/OnlyB the others. A table keyed differently on the two sides
// is an error.
func pairTables(ctx context.Context, q pgx.Tx, res *DiffResult) ([]table, error) {
	keysOf := func(schema string) (map[string][]string, error) {
		rows, err := q.Query(ctx, `SELECT c.relname, coalesce((SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
				FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
				WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`, schema)
		if err != nil {
			return nil, err
		}
		out := map[string][]string{}
		for rows.Next() {
			var name string
			var key []string
			if err := rows.Scan(&name, &key); err != nil {
				return nil, err
			}
			out[name] = key
		}
		return out, rows.Err()
	}
	a, err := keysOf(res.A)
	if err != nil {
		return nil, err
	}
	b, err := keysOf(res.B)
	if err != nil {
		return nil, err
	}
	var out []table
	for _, name := range slicesSorted(a) {
		kb, ok := b[name]
		switch {
		case !ok:
			res.OnlyA = append(res.OnlyA, name)
		case !slices.Equal(a[name], kb):
			return nil, &Error{Op: "diff", Err: ErrBadDefinition, Reason: fmt.Sprintf(
				"table %s has the primary key (%s) in %s and (%s) in %s: rows cannot be matched",
				name, strings.Join(a[name], ", "), res.A, strings.Join(kb, ", "), res.B)}
		default:
			out = append(out, table{name: name, key: a[name]})
			res.Tables = append(res.Tables, name)
		}
	}
	for _, name := range slicesSorted(b) {
		if _, ok := a[name]; !ok {
			res.OnlyB = append(res.OnlyB, name)
		}
	}
	return out, nil
}

func slicesSorted(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func qualified(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

func quotedList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// compareAll appends the differing keys of every table to res, at most
// limit in all.
func compareAll(ctx context.Context, q pgx.Tx, res *DiffResult, tables []table, limit int) error {
	for _, t := range tables {
		left := limit - len(res.Keys)
		if left <= 0 {
			res.More = true
			return nil
		}
		a, b := qualified(res.A, t.name), qualified(res.B, t.name)
		var sql string
		if len(t.key) == 0 {
			sql = fmt.Sprintf(`SELECT r, to_jsonb(count(*) FILTER (WHERE s = 'a')), to_jsonb(count(*) FILTER (WHERE s = 'b'))
				FROM (SELECT 'a' AS s, to_jsonb(x) AS r FROM %s x UNION ALL SELECT 'b', to_jsonb(y) FROM %s y) u
				GROUP BY r HAVING count(*) FILTER (WHERE s = 'a') <> count(*) FILTER (WHERE s = 'b') ORDER BY r::text LIMIT $1`, a, b)
		} else {
			cols := quotedList(t.key)
			obj := make([]string, len(t.key))
			for i, c := range t.key {
				obj[i] = fmt.Sprintf("%s, %s", quoteLiteral(c), pgx.Identifier{c}.Sanitize())
			}
			sql = fmt.Sprintf(`SELECT jsonb_build_object(%s), to_jsonb(a), to_jsonb(b)
				FROM %s a FULL JOIN %s b USING (%s) WHERE to_jsonb(a) IS DISTINCT FROM to_jsonb(b) ORDER BY %s LIMIT $1`,
				strings.Join(obj, ", "), a, b, cols, cols)
		}
		rows, err := q.Query(ctx, sql, left+1)
		if err != nil {
			return fmt.Errorf("projection: diff table %s: %w", t.name, err)
		}
		for rows.Next() {
			var k KeyDiff
			if err := rows.Scan(&k.Key, &k.A, &k.B); err != nil {
				return err
			}
			if len(res.Keys) == limit {
				res.More = true
				break
			}
			k.Table = t.name
			res.Keys = append(res.Keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("projection: diff table %s: %w", t.name, err)
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// side is one definition of a Diff and its temporary schema.
type side struct {
	name   string // "a" or "b"
	p      *Projection
	schema string
	tx     *Tx
	// masker masks the events the side's handlers see (nil: not masked);
	// masked holds the masked events of the current batch by position.
	masker *mask.Masker
	masked map[rewind.Position]*rewind.RecordedEvent
}

// view returns ev as the side's handlers see it: its data masked when
// the side masks and a rule changed it.
func (s *side) view(ev *rewind.RecordedEvent) *rewind.RecordedEvent {
	if m, ok := s.masked[ev.Position]; ok {
		return m
	}
	return ev
}

// setMaskers gives each side the masker of its projection and marks res.
func setMaskers(cfg *Config, op string, sides []*side, res *DiffResult) error {
	for _, s := range sides {
		m, err := s.p.masker(cfg, op)
		if err != nil {
			return err
		}
		if m != nil {
			s.masker, s.masked = m, map[rewind.Position]*rewind.RecordedEvent{}
			res.Masked = true
			if id := m.KeyID(); id != "" {
				res.MaskKeyID = id
			}
		}
	}
	return nil
}

// Diff builds a and b from the start of the log to opts.To into
// temporary schemas of their own, replaying each event into both, then
// compares them as Compare does and, for each differing key of a keyed
// table, replays again to find the first event after which its rows
// differed. Effects are never recorded. The temporary schemas are
// dropped before Diff returns. a and b may be two versions of one
// projection (the serving one and a rebuild) or any two definitions whose
// tables share names and keys.
func Diff(ctx context.Context, cfg Config, a, b Projection, opts DiffOptions) (*DiffResult, error) {
	for _, p := range []*Projection{&a, &b} {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if p.Setup == nil {
			return nil, &Error{Op: "diff", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: "Setup is required: diff builds the tables"}
		}
	}
	if cfg.Pool == nil || cfg.Store == nil {
		return nil, &Error{Op: "diff", Err: ErrBadDefinition, Reason: "Config.Pool and Config.Store are required"}
	}
	opts.defaults()
	end, err := logEnd(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	if opts.To > end {
		return nil, &Error{Op: "diff", Err: ErrBadDefinition, Reason: fmt.Sprintf("To %d is past the end of the log (%d)", opts.To, end)}
	}
	if opts.To == 0 {
		opts.To = end
	}
	var id [6]byte
	rand.Read(id[:])
	tag := hex.EncodeToString(id[:])
	sides := []*side{{name: "a", p: &a, schema: "rewind_diff_" + tag + "_a"}, {name: "b", p: &b, schema: "rewind_diff_" + tag + "_b"}}
	defer func() {
		for _, s := range sides {
			cfg.Pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+quoteSchema(s.schema)+" CASCADE")
		}
	}()
	res := &DiffResult{A: sides[0].schema, B: sides[1].schema, Position: opts.To}
	if err := setMaskers(&cfg, "diff", sides, res); err != nil {
		return nil, err
	}
	d := &differ{cfg: cfg, sides: sides, opts: opts, res: res}
	if err := d.build(ctx, nil); err != nil {
		return nil, err
	}
	tx, err := cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := pairTables(ctx, tx, res)
	if err == nil {
		err = compareAll(ctx, tx, res, tables, opts.Limit)
	}
	tx.Rollback(ctx)
	if err != nil {
		return nil, err
	}
	// Localise: build again, watching the differing keys of keyed tables.
	watch := map[string]*watched{}
	for i := range res.Keys {
		k := &res.Keys[i]
		for _, t := range tables {
			if t.name == k.Table && len(t.key) > 0 {
				w := watch[t.name]
				if w == nil {
					w = &watched{table: t}
					watch[t.name] = w
				}
				w.keys = append(w.keys, k)
			}
		}
	}
	if len(watch) == 0 {
		return res, nil
	}
	res.Parked, res.Events, res.MaskedEvents, res.MaskedValues = nil, 0, 0, 0
	return res, d.build(ctx, watch)
}

// watched is a table's differing keys that a second build localises.
type watched struct {
	table table
	keys  []*KeyDiff
}

// differ replays the log into both sides of a Diff.
type differ struct {
	cfg   Config
	sides []*side
	opts  DiffOptions
	res   *DiffResult
}

// build (re)creates both schemas and replays the log into them in
// batches, one transaction each. With watch, after each batch it checks
// the watched keys not localised yet; when some now differ, it applies
// the batch again one event at a time to find the event.
func (d *differ) build(ctx context.Context, watch map[string]*watched) error {
	for _, s := range d.sides {
		q := quoteSchema(s.schema)
		if _, err := d.cfg.Pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+q+" CASCADE; CREATE SCHEMA "+q+"; "+s.p.Setup(q)); err != nil {
			return &Error{Op: "diff", Name: s.p.Name, Version: s.p.Version, Err: ErrBadDefinition,
				Reason: fmt.Sprintf("its Setup failed: %v", err)}
		}
	}
	var types []string
	for _, s := range d.sides {
		types = append(types, s.p.types()...)
	}
	slices.Sort(types)
	types = slices.Compact(types)
	var batch []rewind.RecordedEvent
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := d.apply(ctx, batch, watch)
		batch = batch[:0]
		for _, s := range d.sides {
			clear(s.masked)
		}
		return err
	}
	w := replay.Window{To: replay.AtPosition(d.opts.To), Types: types}
	_, err := replay.Run(ctx, d.cfg.Store, w, func(ctx context.Context, ev *rewind.RecordedEvent) error {
		if err := d.mask(ev); err != nil {
			return err
		}
		batch = append(batch, ev.Clone())
		if len(batch) >= d.opts.Batch {
			return flush()
		}
		return nil
	}, replay.Options{})
	if err != nil {
		return err
	}
	return flush()
}

// mask masks ev for each side that masks and handles its type, before
// any handler sees it: an event that cannot be masked fails the build
// (fail closed: its data reaches no handler, so no table).
func (d *differ) mask(ev *rewind.RecordedEvent) error {
	for _, s := range d.sides {
		if s.masker == nil || s.p.Handlers[ev.Type] == nil {
			continue
		}
		m, n, err := s.masker.Event(ev)
		if err != nil {
			return err
		}
		if n > 0 {
			c := m.Clone() // ev is the reader's, valid until the callback returns
			s.masked[ev.Position] = &c
			d.res.MaskedEvents++
			d.res.MaskedValues += int64(n)
		}
	}
	return nil
}

// apply applies a batch to both sides in one transaction. If a handler
// or the writes fail, or a watched key starts to differ, it applies the
// batch again one event at a time (savepoints), parking what fails and
// checking the watched keys after each event.
func (d *differ) apply(ctx context.Context, batch []rewind.RecordedEvent, watch map[string]*watched) error {
	fast := func() (ok bool, err error) {
		tx, err := d.begin(ctx)
		if err != nil {
			return false, err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		for i := range batch {
			ev := &batch[i]
			for _, s := range d.sides {
				if h := s.p.Handlers[ev.Type]; h != nil {
					v := s.view(ev)
					s.tx.ev = v
					if h(ctx, s.tx, v) != nil {
						return false, ctx.Err()
					}
				}
			}
		}
		for _, s := range d.sides {
			if s.tx.flush(ctx) != nil {
				return false, ctx.Err()
			}
		}
		if changed, err := d.check(ctx, tx, watch, nil); err != nil || changed {
			return false, err
		}
		return true, tx.Commit(ctx)
	}
	if ok, err := fast(); err != nil || ok {
		d.res.Events += int64(len(batch))
		return err
	}
	tx, err := d.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for i := range batch {
		ev := &batch[i]
		for _, s := range d.sides {
			h := s.p.Handlers[ev.Type]
			if h == nil {
				continue
			}
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			v := s.view(ev)
			s.tx.ev = v
			herr := h(ctx, s.tx, v)
			if herr == nil {
				herr = s.tx.flush(ctx)
			}
			if herr == nil {
				if err := sp.Commit(ctx); err != nil {
					return err
				}
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			clear(s.tx.ops)
			s.tx.ops = s.tx.ops[:0]
			if err := sp.Rollback(ctx); err != nil {
				return err
			}
			d.res.Parked = append(d.res.Parked, DiffParked{Side: s.name, Position: ev.Position, Type: ev.Type, Error: herr.Error()})
		}
		if _, err := d.check(ctx, tx, watch, ev); err != nil {
			return err
		}
	}
	d.res.Events += int64(len(batch))
	return tx.Commit(ctx)
}

// begin starts a transaction and gives each side a Tx on it.
func (d *differ) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := d.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range d.sides {
		s.tx = &Tx{pg: tx, schema: quoteSchema(s.schema), name: s.p.Name, version: s.p.Version, noStream: true}
	}
	return tx, nil
}

// check compares the watched keys not localised yet on both sides. With
// ev, it records ev as the first divergence of those that now differ;
// without, it reports whether any does.
func (d *differ) check(ctx context.Context, tx pgx.Tx, watch map[string]*watched, ev *rewind.RecordedEvent) (bool, error) {
	changed := false
	for _, w := range watch {
		var open []*KeyDiff
		var keys []json.RawMessage
		for _, k := range w.keys {
			if k.FirstPosition == 0 {
				open = append(open, k)
				keys = append(keys, k.Key)
			}
		}
		if len(open) == 0 {
			continue
		}
		a, b := qualified(d.sides[0].schema, w.table.name), qualified(d.sides[1].schema, w.table.name)
		on := func(alias string) string {
			c := make([]string, len(w.table.key))
			for i, col := range w.table.key {
				q := pgx.Identifier{col}.Sanitize()
				c[i] = fmt.Sprintf("%s.%s IS NOT DISTINCT FROM r.%s", alias, q, q)
			}
			return strings.Join(c, " AND ")
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT k.i, to_jsonb(a) IS DISTINCT FROM to_jsonb(b)
			FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS k(key, i)
			CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, k.key) AS r
			LEFT JOIN %s a ON %s LEFT JOIN %s b ON %s`, a, a, on("a"), b, on("b")), keys)
		if err != nil {
			return false, fmt.Errorf("projection: diff: check the keys of %s: %w", w.table.name, err)
		}
		for rows.Next() {
			var i int64
			var differs bool
			if err := rows.Scan(&i, &differs); err != nil {
				rows.Close()
				return false, err
			}
			if differs {
				changed = true
				if ev != nil {
					open[i-1].FirstPosition, open[i-1].FirstType = ev.Position, ev.Type
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// AsOf is a projection built as of a position by BuildAsOf.
type AsOf struct {
	// Schema holds the projection's tables as of Position.
	Schema   string          `json:"schema"`
	Position rewind.Position `json:"position"`
	Events   int64           `json:"events"`
	// Parked lists the events the handlers failed on (skipped).
	Parked []DiffParked `json:"parked,omitempty"`
	// Masked says the handlers saw the events with the projection's
	// sensitive fields masked (the schema's comment says so too);
	// MaskKeyID names the hash key, MaskedEvents and MaskedValues count
	// what was masked.
	Masked       bool   `json:"masked"`
	MaskKeyID    string `json:"mask_key_id,omitempty"`
	MaskedEvents int64  `json:"masked_events,omitempty"`
	MaskedValues int64  `json:"masked_values,omitempty"`
}

// asOfComment marks an as-of schema with what it holds, so that whoever
// finds it knows whether its data was masked.
func asOfComment(p *Projection, res *DiffResult) string {
	s := fmt.Sprintf("rewind as-of build of projection %s v%d at position %d; ", p.Name, p.Version, res.Position)
	if !res.Masked {
		return s + "unmasked"
	}
	s += fmt.Sprintf("masked (%d events, %d values", res.MaskedEvents, res.MaskedValues)
	if res.MaskKeyID != "" {
		s += ", hash key id " + res.MaskKeyID
	}
	return s + ")"
}

var asOfSchemaRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// BuildAsOf builds p from the start of the log up to position at into a
// new schema of that name, with effects never recorded: the state of a
// projection over many streams as of a position, to query and then drop
// (DROP SCHEMA … CASCADE). The schema must not exist; at must be in the
// log (0: its end). On an error the schema is dropped.
func BuildAsOf(ctx context.Context, cfg Config, p Projection, at rewind.Position, schema string) (*AsOf, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	bad := func(reason string) error {
		return &Error{Op: "as-of", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: reason}
	}
	switch {
	case p.Setup == nil:
		return nil, bad("Setup is required: the build creates the tables")
	case cfg.Pool == nil || cfg.Store == nil:
		return nil, bad("Config.Pool and Config.Store are required")
	case !asOfSchemaRE.MatchString(schema) || strings.HasPrefix(schema, "pg_") || schema == "rewind_proj":
		return nil, bad(fmt.Sprintf("the schema must be 1–63 lower-case letters, digits or _, starting with a letter, "+
			"not pg_… nor rewind_proj, not %q", schema))
	}
	end, err := logEnd(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	if at > end {
		return nil, bad(fmt.Sprintf("position %d is past the end of the log (%d)", at, end))
	}
	if at == 0 {
		at = end
	}
	res := &DiffResult{Position: at}
	sides := []*side{{name: "a", p: &p, schema: schema}}
	if err := setMaskers(&cfg, "as-of", sides, res); err != nil {
		return nil, err
	}
	// Created here, so that a schema someone else has is never dropped.
	if _, err := cfg.Pool.Exec(ctx, "CREATE SCHEMA "+quoteSchema(schema)); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P06" {
			return nil, bad(fmt.Sprintf("schema %s exists: choose another name, or drop it first", schema))
		}
		return nil, err
	}
	d := &differ{cfg: cfg, sides: sides, opts: DiffOptions{To: at}, res: res}
	d.opts.defaults()
	err = d.build(ctx, nil)
	if err == nil {
		_, err = cfg.Pool.Exec(ctx, "COMMENT ON SCHEMA "+quoteSchema(schema)+" IS "+quoteLiteral(asOfComment(&p, res)))
	}
	if err != nil {
		cfg.Pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+quoteSchema(schema)+" CASCADE")
		return nil, err
	}
	return &AsOf{Schema: schema, Position: at, Events: res.Events, Parked: res.Parked, Masked: res.Masked,
		MaskKeyID: res.MaskKeyID, MaskedEvents: res.MaskedEvents, MaskedValues: res.MaskedValues}, nil
}
