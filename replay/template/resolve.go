package template

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/mask"
	"github.com/rewindhq/rewind/store"
)

// resolver decodes the sections of a template with parameter values.
type resolver struct {
	t       *Template
	vals    map[string]string
	partial bool
	sp      *Spec
	prefix  value // filter.prefix, once read
}

// field returns the value of key in section (nil when absent) after
// refusing keys the section does not have.
func (r *resolver) fields(section string, allowed []string) (map[string]*yaml.Node, error) {
	n := r.t.sections[section]
	if n == nil || n.Tag == "!!null" {
		return map[string]*yaml.Node{}, nil
	}
	return r.t.mapping(section, n, allowed)
}

// scalar returns a field's value; ok is false when it is absent, empty, or
// waits for a parameter's value (Parse).
func (r *resolver) scalar(key string, n *yaml.Node) (value, bool, error) {
	if n == nil {
		return value{}, false, nil
	}
	v, err := r.t.scalar(key, n, r.vals, r.partial)
	if errors.Is(err, errSkip) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	if v.secret {
		field := strings.SplitN(key, "[", 2)[0]
		if parts := strings.SplitN(field, ".", 3); parts[0] == "target" || parts[0] == "checks" || parts[0] == "pacing" {
			field = parts[0]
		}
		r.sp.secret[field] = true
		r.sp.addSecret(v.s)
	}
	return v, v.s != "", nil
}

func (r *resolver) bad(v value, format string, args ...any) error {
	return r.t.err(v.key, v.n, v.shown(), format, args...)
}

// literal reports whether a node's value is written out, without a
// reference: its YAML type must then be the field's.
func literal(n *yaml.Node) bool { return !strings.Contains(n.Value, "${") }

func (r *resolver) integer(key string, n *yaml.Node, min int64) (*int64, error) {
	v, ok, err := r.scalar(key, n)
	if err != nil || !ok {
		return nil, err
	}
	i, perr := strconv.ParseInt(v.s, 10, 64)
	if perr != nil || !integerText.MatchString(v.s) || literal(n) && n.Tag != "!!int" || i < min {
		return nil, r.bad(v, "must be a whole number of at least %d", min)
	}
	return &i, nil
}

func (r *resolver) number(key string, n *yaml.Node, lo, hi float64, reason string) (float64, error) {
	v, ok, err := r.scalar(key, n)
	if err != nil || !ok {
		return 0, err
	}
	f, perr := strconv.ParseFloat(v.s, 64)
	if perr != nil || !numberText.MatchString(v.s) || literal(n) && n.Tag != "!!int" && n.Tag != "!!float" || f <= 0 {
		return 0, r.bad(v, "must be a positive decimal number, such as 2 or 0.5")
	}
	if f < lo || f > hi {
		return 0, r.bad(v, "%s", reason)
	}
	return f, nil
}

func (r *resolver) window() error {
	f, err := r.fields("window", []string{"from", "to"})
	if err != nil {
		return err
	}
	for _, b := range []struct {
		key string
		out *replay.Bound
	}{{"from", &r.sp.Window.From}, {"to", &r.sp.Window.To}} {
		v, ok, err := r.scalar("window."+b.key, f[b.key])
		if err != nil || !ok {
			if err == nil && f[b.key] != nil && literal(f[b.key]) {
				return r.bad(v, "must be a position (from 1) or an RFC 3339 time; leave the key out for the start or the end of the log")
			}
			if err != nil {
				return err
			}
			continue
		}
		bound, perr := replay.ParseBound(b.key, v.s)
		if isZeroTime(perr) {
			return r.bad(v, replay.ZeroTimeReason)
		}
		if perr != nil || bound.IsZero() {
			return r.bad(v, "must be a position (from 1, such as 1000) or an RFC 3339 time (such as 2026-11-23T10:00:00Z)")
		}
		*b.out = bound
	}
	w := &r.sp.Window
	if w.From.Position != 0 && w.To.Position != 0 && w.From.Position > w.To.Position ||
		!w.From.Time.IsZero() && !w.To.Time.IsZero() && w.From.Time.After(w.To.Time) {
		return r.t.err("window.from", f["from"], w.From.String(), "is after window.to %s (both ends are inclusive: from = to replays one position or instant)", w.To)
	}
	return nil
}

func (r *resolver) list(key string, n *yaml.Node, check func(string) error) ([]string, error) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, r.t.err(key, n, "", "must be a list such as [a, b], not %s", kindName(n))
	}
	var out []string
	for i, c := range n.Content {
		k := key + "[" + strconv.Itoa(i) + "]"
		v, ok, err := r.scalar(k, c)
		if err != nil {
			return nil, err
		}
		if !ok && (literal(c) || !r.partial) {
			return nil, r.t.err(k, c, "", "must not be empty")
		}
		if ok {
			if err := check(v.s); err != nil {
				return nil, r.bad(v, "%s", validationReason(err))
			}
			out = append(out, v.s)
		}
	}
	return out, nil
}

func (r *resolver) filter() error {
	f, err := r.fields("filter", []string{"prefix", "streams", "types"})
	if err != nil {
		return err
	}
	v, ok, err := r.scalar("filter.prefix", f["prefix"])
	if err != nil {
		return err
	}
	// An empty prefix (written so, null, or a parameter left empty) is no
	// filter at all: the replay would cover every stream.
	if n := f["prefix"]; n != nil && !ok && (literal(n) || !r.partial) {
		return r.bad(v, "must not be empty: an empty prefix selects every stream; leave filter.prefix out to replay them all")
	}
	if ok {
		// Checked here, with the parameters' values, as the store checks
		// it when it reads: a run finds no mistake after it is recorded.
		if err := store.ValidateFilter(rewind.Filter{StreamPrefix: v.s}); err != nil {
			return r.bad(v, "%s", validationReason(err))
		}
		r.sp.Window.StreamPrefix = v.s
		r.prefix = v
	}
	if r.sp.Window.Streams, err = r.list("filter.streams", f["streams"], store.ValidateStreamName); err != nil {
		return err
	}
	if r.sp.Window.Types, err = r.list("filter.types", f["types"], store.ValidateEventType); err != nil {
		return err
	}
	if len(r.sp.Window.Streams) > 0 && r.sp.Window.StreamPrefix != "" {
		return r.t.err("filter.prefix", f["prefix"], "", "give either filter.streams or filter.prefix, not both")
	}
	return nil
}

func (r *resolver) target() error {
	f, err := r.fields("target", []string{"kind", "data_dir", "group", "order_by"})
	if err != nil {
		return err
	}
	t := &r.sp.Target
	t.Line = r.t.Line("target")
	if f["kind"] == nil {
		return r.t.errLine(0, "target", "", "needs a kind: verify (count and digest, nothing written) or store (with data_dir)")
	}
	v, ok, err := r.scalar("target.kind", f["kind"])
	if err != nil || !ok {
		if err == nil && (!r.partial || literal(f["kind"])) {
			err = r.bad(v, "must not be empty: the target kinds are verify (count and digest, nothing written), "+
				"store (an embedded store's data_dir) or group (a bounded consumer group)")
		}
		return err
	}
	t.Kind = v.s
	if t.Kind != "group" {
		for _, k := range []string{"group", "order_by"} {
			if f[k] != nil {
				return r.t.err("target."+k, f[k], "", "is for a group target (kind: group) only")
			}
		}
	}
	switch t.Kind {
	case "group":
		return r.groupTarget(f)
	case "verify":
		if f["data_dir"] != nil {
			return r.t.err("target.data_dir", f["data_dir"], "", "a verify target writes nothing: remove data_dir, or use kind: store")
		}
	case "store":
		d, ok, err := r.scalar("target.data_dir", f["data_dir"])
		if err != nil {
			return err
		}
		if f["data_dir"] == nil || !ok && (literal(f["data_dir"]) || !r.partial) {
			return r.t.err("target.data_dir", f["data_dir"], "", "is required for a store target: the data directory of the embedded store to write to")
		}
		if ok {
			if !filepath.IsAbs(d.s) {
				return r.bad(d, "must be an absolute path (a template is run from any directory)")
			}
			// Printed and recorded (target): a newline would forge a line
			// of `rewind audit log`, an escape sequence drive a terminal.
			if !audit.PlainText(d.s) {
				return r.bad(d, "must be one line of plain text (no control or format characters such as a newline or an escape)")
			}
			t.DataDir = filepath.Clean(d.s)
			if d.secret {
				r.sp.addSecret(t.DataDir)
				if abs, err := filepath.Abs(t.DataDir); err == nil {
					r.sp.addSecret(abs)
				}
			}
		}
	default:
		return r.bad(v, "is not a target kind: verify (count and digest, nothing written), store (an embedded store's data_dir) "+
			"or group (a bounded consumer group)")
	}
	return nil
}

// groupTarget reads a group target: the group's name (required) and its
// order, checked as the consumer engine checks them.
func (r *resolver) groupTarget(f map[string]*yaml.Node) error {
	t := &r.sp.Target
	if f["data_dir"] != nil {
		return r.t.err("target.data_dir", f["data_dir"], "", "a group target creates a consumer group in the source store: remove data_dir")
	}
	g, ok, err := r.scalar("target.group", f["group"])
	if err != nil {
		return err
	}
	if f["group"] == nil || !ok && (literal(f["group"]) || !r.partial) {
		return r.t.err("target.group", f["group"], "", "is required for a group target: the name of the consumer group to create")
	}
	if ok {
		if err := consumer.ValidateGroupName(g.s); err != nil {
			return r.bad(g, "%s", validationReason(err))
		}
		// As groups create: a name like a flag could not be given to the
		// other commands, and the engine's own names are reserved.
		if strings.HasPrefix(g.s, "-") || strings.HasPrefix(g.s, consumer.SystemStreamPrefix) {
			return r.bad(g, "must not start with '-' or %q (reserved for the engine's own streams)", consumer.SystemStreamPrefix)
		}
		t.Group = g.s
	}
	if p := r.sp.Window.StreamPrefix; strings.HasPrefix(p, consumer.SystemStreamPrefix) {
		return r.bad(r.prefix, "names the engine's own streams (%s…), which a group never delivers", consumer.SystemStreamPrefix)
	}
	if f["order_by"] != nil {
		o, ok, err := r.scalar("target.order_by", f["order_by"])
		if err != nil {
			return err
		}
		if !ok && (literal(f["order_by"]) || !r.partial) {
			return r.bad(o, "must not be empty: stream or metadata:NAME; leave target.order_by out for the group's default order")
		}
		if ok {
			if err := (consumer.GroupConfig{Name: "x", OrderBy: o.s}).Validate(); err != nil {
				return r.bad(o, "%s", validationReason(err))
			}
			t.OrderBy = o.s
		}
	}
	return nil
}

// validationReason is the reason of a validation error, or its text.
func validationReason(err error) string {
	var v *rewind.ValidationError
	if errors.As(err, &v) {
		return v.Reason
	}
	return err.Error()
}

func (r *resolver) pacing() error {
	f, err := r.fields("pacing", []string{"speed", "rate", "burst"})
	if err != nil {
		return err
	}
	p := &r.sp.Pacing
	if p.Speed, err = r.number("pacing.speed", f["speed"], replay.MinSpeed, replay.MaxSpeed, replay.SpeedReason); err != nil {
		return err
	}
	if p.Rate, err = r.number("pacing.rate", f["rate"], replay.MinRate, replay.MaxRate, replay.RateReason); err != nil {
		return err
	}
	b, err := r.integer("pacing.burst", f["burst"], 1)
	if err != nil {
		return err
	}
	if b != nil {
		if p.Rate == 0 && !r.partial {
			return r.t.err("pacing.burst", f["burst"], "", "applies only with pacing.rate")
		}
		p.Burst = int(min(*b, 1<<20))
	}
	if p.Speed > 0 && p.Rate > 0 {
		return r.t.err("pacing.rate", f["rate"], "", "give either pacing.speed or pacing.rate, not both")
	}
	return nil
}

func (r *resolver) checks() error {
	f, err := r.fields("checks", []string{"events", "min_events", "max_events", "digest", "types"})
	if err != nil {
		return err
	}
	c := &r.sp.Checks
	for k, out := range map[string]**int64{"events": &c.Events, "min_events": &c.MinEvents, "max_events": &c.MaxEvents} {
		if *out, err = r.integer("checks."+k, f[k], 0); err != nil {
			return err
		}
	}
	if c.MinEvents != nil && c.MaxEvents != nil && *c.MinEvents > *c.MaxEvents {
		return r.t.err("checks.min_events", f["min_events"], "", "is more than checks.max_events (%d)", *c.MaxEvents)
	}
	v, ok, err := r.scalar("checks.digest", f["digest"])
	if err != nil {
		return err
	}
	if ok {
		d := strings.ToLower(v.s)
		if len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
			return r.bad(v, "must be 64 hex digits, a digest as `rewind replay --count-only` or `rewind replay plan` prints it")
		}
		c.Digest = d
	}
	if n := f["types"]; n != nil && n.Tag != "!!null" {
		types, err := r.t.mapping("checks.types", n, nil)
		if err != nil {
			return err
		}
		c.Types = map[string]int64{}
		for _, typ := range slices.Sorted(maps.Keys(types)) {
			// Checked as filter.types are, up front: a type the store
			// refuses would otherwise fail the run after it is recorded.
			if err := store.ValidateEventType(typ); err != nil {
				return r.t.errLine(r.t.lines["checks.types."+typ], "checks.types."+typ, typ, "%s", validationReason(err))
			}
			i, err := r.integer("checks.types."+typ, types[typ], 0)
			if err != nil {
				return err
			}
			if i != nil {
				c.Types[typ] = *i
			}
		}
	}
	return nil
}

func (r *resolver) mask() error {
	n := r.t.sections["mask"]
	if n == nil || n.Tag == "!!null" {
		return nil
	}
	types, err := r.t.mapping("mask", n, nil)
	if err != nil {
		return err
	}
	rules := mask.Rules{}
	for i := 0; i+1 < len(n.Content); i += 2 { // in the file's order
		typ := n.Content[i].Value
		key := "mask." + typ
		if typ == "" {
			return r.t.err(key, n.Content[i], "", "an event type must not be empty (* is every type)")
		}
		// Checked as filter.types and checks.types are: a name that is no
		// event type (a typo, a space) would mask nothing, silently. A
		// valid type the window holds no event of is fine.
		if typ != mask.AnyType {
			if err := store.ValidateEventType(typ); err != nil {
				return r.t.err(key, n.Content[i], typ, "%s (* is every type)", validationReason(err))
			}
		}
		paths := types[typ]
		if paths.Kind != yaml.MappingNode || len(paths.Content) == 0 {
			return r.t.err(key, paths, "", "must be a mapping of JSON path: action (mask, hash or drop), such as {customer.email: hash}")
		}
		for j := 0; j+1 < len(paths.Content); j += 2 {
			path, act := paths.Content[j].Value, paths.Content[j+1]
			pkey := key + "." + path
			if act.Kind != yaml.ScalarNode || act.Tag == "!!null" {
				return r.t.err(pkey, act, "", "must be an action: mask, hash or drop, not %s", kindName(act))
			}
			if err := rules.Add(typ, path, mask.Action(act.Value)); err != nil {
				return r.t.err(pkey, paths.Content[j], "", "%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), mask.ErrBadRule.Error()), ": "))
			}
		}
	}
	r.sp.Mask = rules
	return nil
}

// isZeroTime reports whether err is replay.ParseBound refusing the zero
// time, which deserves its own message (it is a valid RFC 3339 time).
func isZeroTime(err error) bool {
	var re *replay.Error
	return errors.As(err, &re) && re.Reason == replay.ZeroTimeReason
}
