package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay/mask"
)

// Handler applies one event to the projection's target through tx. It must
// make every lasting change through tx (writes and effects), so that the
// change commits with the checkpoint or not at all. The event is valid until
// the handler returns (tx copies byte slices it is given). An error parks
// the event (see Runner): it never stops the projection.
type Handler func(ctx context.Context, tx *Tx, ev *rewind.RecordedEvent) error

// Projection is a named, versioned set of handlers writing into a
// PostgreSQL schema of its own, SchemaName(Name, Version).
//
// A new version is a new schema built from the start of the log; see Swap
// for how it replaces the serving version.
type Projection struct {
	// Name names the projection: lower-case letters, digits and _, starting
	// with a letter, at most 40 bytes.
	Name string
	// Version numbers the projection's code, from 1. Change it whenever a
	// handler or the schema changes in a way that needs a rebuild.
	Version int
	// Handlers maps an event type to its handler. Events of other types are
	// not read at all (the store filters them), but still advance the
	// checkpoint.
	Handlers map[string]Handler
	// Setup returns the DDL creating the projection's tables in schema (a
	// quoted identifier, to be used as schema + ".table"). It runs once,
	// when the version first starts, in the transaction that creates the
	// schema.
	Setup func(schema string) string
	// Sensitive declares the sensitive fields of the events' data, per
	// event type (package replay/mask: a JSON path and an action — mask,
	// hash or drop; build it with Rules.Add). Builds into a target that
	// does not serve — BuildAsOf and Diff — hand the handlers each event
	// with these fields masked, unless Config.Unmasked; a Runner (the
	// serving version and its blue/green rebuilds) never masks. Nil
	// declares none.
	Sensitive mask.Rules
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// validate checks p without touching anything.
func (p *Projection) validate() error {
	bad := func(reason string) error {
		return &Error{Op: "define", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: reason}
	}
	switch {
	case !nameRE.MatchString(p.Name):
		return bad("the name must be 1–40 lower-case letters, digits or _, starting with a letter")
	case p.Version < 1:
		return bad(fmt.Sprintf("the version must be 1 or more, not %d", p.Version))
	case len(p.Handlers) == 0:
		return bad("give at least one handler")
	}
	for t, h := range p.Handlers {
		if t == "" || h == nil {
			return bad("a handler's event type must not be empty and its handler not nil")
		}
	}
	return nil
}

// masker returns the masker of a build that does not serve: nil when
// the projection declares no sensitive field or cfg turns masking off.
func (p *Projection) masker(cfg *Config, op string) (*mask.Masker, error) {
	if len(p.Sensitive) == 0 || cfg.Unmasked {
		return nil, nil
	}
	m, err := mask.New(p.Sensitive, cfg.MaskKey)
	if err != nil {
		return nil, &Error{Op: op, Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: fmt.Sprintf(
			"its Sensitive rules hash: give Config.MaskKey, at least %d bytes (or Config.Unmasked for an unmasked build)", mask.MinKeyLen)}
	}
	return m, nil
}

// types returns the handled event types, sorted.
func (p *Projection) types() []string {
	ts := make([]string, 0, len(p.Handlers))
	for t := range p.Handlers {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// SchemaName returns the schema of a version of a projection,
// proj_NAME_vVERSION.
func SchemaName(name string, version int) string {
	return fmt.Sprintf("proj_%s_v%d", name, version)
}

// Decode unmarshals ev's JSON body into a T. A failure matches
// ErrUndecodable, so that a handler returning it parks the event as
// undecodable.
func Decode[T any](ev *rewind.RecordedEvent) (T, error) {
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		return v, fmt.Errorf("%w: %s at position %d: %w", ErrUndecodable, ev.Type, ev.Position, err)
	}
	return v, nil
}

// quoteSchema quotes a schema name.
func quoteSchema(s string) string { return pgx.Identifier{s}.Sanitize() }
