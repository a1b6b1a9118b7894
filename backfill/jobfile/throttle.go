package jobfile

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind/backfill/throttle"
)

// The throttle block paces a run (see docs/backfill.md, Throttling):
//
//	throttle:
//	  chunk_time: 500ms            # chunk sizes adapt to it unless chunk: is given
//	  min_chunk: 10
//	  max_chunk: 100000
//	  max_rate: 5000               # rows per second, per process
//	  slow_from: 0                 # slow down from this share of the signals' max (default 0); or off
//	  replication_lag: {max: 1.5s, critical: 30s}     # or off
//	  load: {max_active: 32, max_lock_waits: 16, max_xact_age: 1h}   # or off
//	  heartbeat:
//	    - {name: replica2, dsn: "postgres://…", table: heartbeat, column: at, max: 2s}
//	  queries:
//	    - {name: queue, sql: "SELECT count(*) FROM jobs", max: 1000, critical: 10000}
//	  http:
//	    - {name: ops, url: "https://ops.example/throttle", max: 0.8, critical: 1}
//	  file: {path: /tmp/rewind-throttle, critical: /tmp/rewind-pause}
//
// "throttle: off" reads no signal at all. Each value is typed (durations
// take a unit, counts are whole numbers) and checked: an unknown key, a
// negative max, a critical under its max, a bad URL are errors naming
// the key and its line.

// Throttle returns the job file's throttle block (the zero Spec, the
// default throttle, when it has none).
func (f *File) Throttle() throttle.Spec {
	if f.spec.Throttle == nil {
		return throttle.Spec{}
	}
	return *f.spec.Throttle
}

// HasThrottle reports whether the job file has a throttle block.
func (f *File) HasThrottle() bool { return f.spec.Throttle != nil }

type tfield func(f *File, field string, v *yaml.Node) error

// mapping decodes a mapping node with the decoders of its keys, recording
// each key's line as field.key.
func (f *File) mapping(field string, v *yaml.Node, fields map[string]tfield) error {
	if v.Kind != yaml.MappingNode {
		return f.errorf(field, "must be a mapping of %s, not %s", keyList(fields), kindName(v))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		sub := field + "." + k.Value
		f.lines[sub] = k.Line
		dec, ok := fields[k.Value]
		switch {
		case !ok:
			return f.errorf(field, "line %d: unknown key %q (the keys are %s)", k.Line, k.Value, keyList(fields))
		case seen[k.Value]:
			return f.errorf(sub, "is given twice")
		}
		seen[k.Value] = true
		if err := dec(f, sub, v.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func keyList(fields map[string]tfield) string {
	return strings.Join(slices.Sorted(maps.Keys(fields)), ", ")
}

func durationField(out *time.Duration) tfield {
	return func(f *File, field string, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return f.errorf(field, "must be a duration with a unit, such as 500ms or 1.5s, not %s", kindName(v))
		}
		d, err := time.ParseDuration(v.Value)
		if err != nil {
			return f.errorf(field, "must be a duration with a unit, such as 500ms or 1.5s, not %q", v.Value)
		}
		if d < 0 {
			return f.errorf(field, "must not be negative, not %s", d)
		}
		*out = d
		return nil
	}
}

func numberField(out *float64) tfield {
	return func(f *File, field string, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
			return f.errorf(field, "must be a number, not %s", kindName(v))
		}
		n, err := strconv.ParseFloat(strings.ReplaceAll(v.Value, "_", ""), 64)
		if err != nil {
			return f.errorf(field, "must be a number, not %q", v.Value)
		}
		if n < 0 {
			return f.errorf(field, "must not be negative, not %s", v.Value)
		}
		*out = n
		return nil
	}
}

func countField(out *int) tfield {
	return func(f *File, field string, v *yaml.Node) error {
		var n int
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
			return f.errorf(field, "must be a whole number, not %s", kindName(v))
		}
		if n < 0 {
			return f.errorf(field, "must not be negative, not %d", n)
		}
		*out = n
		return nil
	}
}

// wholeField is a count (backends) kept as a number: a whole one.
func wholeField(out *float64) tfield {
	return func(f *File, field string, v *yaml.Node) error {
		var n int
		if err := countField(&n)(f, field, v); err != nil {
			return err
		}
		*out = float64(n)
		return nil
	}
}

// nonZero refuses 0 for a field where leaving it out means the default:
// written 0 would silently mean the default too.
func nonZero(decode tfield) tfield {
	return func(f *File, field string, v *yaml.Node) error {
		if v.Kind == yaml.ScalarNode {
			if d, err := time.ParseDuration(v.Value); (err == nil && d == 0) || strings.TrimLeft(v.Value, "+0") == "" {
				return f.errorf(field, "must not be 0: leave it out for the default")
			}
		}
		return decode(f, field, v)
	}
}

func textField(out *string) tfield {
	return func(f *File, field string, v *yaml.Node) error { return f.scalar(field, v, out) }
}

// isOff reports whether v is the word off (or false).
func isOff(v *yaml.Node) bool {
	return v.Kind == yaml.ScalarNode && (v.Value == "off" || (v.Tag == "!!bool" && v.Value == "false"))
}

// list decodes a list of mappings, item n recorded as field[n].
func (f *File) list(field string, v *yaml.Node, item func(sub string, n *yaml.Node) error) error {
	if v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return f.errorf(field, "must be a list of mappings (- name: …), not %s", kindName(v))
	}
	for i, n := range v.Content {
		sub := fmt.Sprintf("%s[%d]", field, i+1)
		f.lines[sub] = n.Line
		if err := item(sub, n); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) decodeThrottle(v *yaml.Node) error {
	s := &throttle.Spec{}
	f.spec.Throttle = s
	if isOff(v) {
		s.Off = true
		return nil
	}
	return f.mapping("throttle", v, map[string]tfield{
		"chunk_time": nonZero(durationField(&s.ChunkTime)),
		"min_chunk":  nonZero(countField(&s.MinChunk)),
		"max_chunk":  nonZero(countField(&s.MaxChunk)),
		"max_rate":   numberField(&s.MaxRate),
		"interval":   nonZero(durationField(&s.Interval)),
		"grace":      countField(&s.Grace),
		"slow_from": func(f *File, field string, v *yaml.Node) error {
			if isOff(v) {
				s.SlowFrom = 1
				return nil
			}
			if err := numberField(&s.SlowFrom)(f, field, v); err != nil {
				return err
			}
			if s.SlowFrom > 1 {
				return f.errorf(field, "must be a share of the signals' max from 0 to 1 (or off), not %s", v.Value)
			}
			return nil
		},
		"replication_lag": func(f *File, field string, v *yaml.Node) error {
			s.Lag = &throttle.LagSpec{}
			if isOff(v) {
				s.Lag.Off = true
				return nil
			}
			return f.mapping(field, v, map[string]tfield{"max": durationField(&s.Lag.Max), "critical": durationField(&s.Lag.Critical)})
		},
		"load": func(f *File, field string, v *yaml.Node) error {
			l := &throttle.LoadSpec{}
			s.Load = l
			if isOff(v) {
				l.Off = true
				return nil
			}
			return f.mapping(field, v, map[string]tfield{
				"max_active": wholeField(&l.MaxActive), "critical_active": wholeField(&l.CriticalActive),
				"max_lock_waits": wholeField(&l.MaxLockWaits), "critical_lock_waits": wholeField(&l.CriticalLockWaits),
				"max_xact_age": durationField(&l.MaxXactAge), "critical_xact_age": durationField(&l.CriticalXactAge)})
		},
		"heartbeat": func(f *File, field string, v *yaml.Node) error {
			return f.list(field, v, func(sub string, n *yaml.Node) error {
				var h throttle.HeartbeatSpec
				err := f.mapping(sub, n, map[string]tfield{"name": textField(&h.Name), "dsn": textField(&h.DSN),
					"table": textField(&h.Table), "column": textField(&h.Column),
					"max": durationField(&h.Max), "critical": durationField(&h.Critical)})
				s.Heartbeats = append(s.Heartbeats, h)
				return err
			})
		},
		"queries": func(f *File, field string, v *yaml.Node) error {
			return f.list(field, v, func(sub string, n *yaml.Node) error {
				var q throttle.QuerySpec
				err := f.mapping(sub, n, map[string]tfield{"name": textField(&q.Name), "sql": textField(&q.SQL),
					"max": numberField(&q.Max), "critical": numberField(&q.Critical)})
				s.Queries = append(s.Queries, q)
				return err
			})
		},
		"http": func(f *File, field string, v *yaml.Node) error {
			return f.list(field, v, func(sub string, n *yaml.Node) error {
				var h throttle.HTTPSpec
				err := f.mapping(sub, n, map[string]tfield{"name": textField(&h.Name), "url": textField(&h.URL),
					"max": numberField(&h.Max), "critical": numberField(&h.Critical), "timeout": nonZero(durationField(&h.Timeout))})
				s.HTTP = append(s.HTTP, h)
				return err
			})
		},
		"file": func(f *File, field string, v *yaml.Node) error {
			s.File = &throttle.FileSpec{}
			return f.mapping(field, v, map[string]tfield{"path": textField(&s.File.Path), "critical": textField(&s.File.Critical)})
		},
	})
}

// checkThrottle validates the block as a whole (critical under max,
// names, URLs), naming the key's line.
func (f *File) checkThrottle() error {
	if f.spec.Throttle == nil {
		return nil
	}
	err := f.spec.Throttle.Validate()
	var fe *throttle.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field, reason := "throttle."+fe.Field, fe.Reason
	if f.lines[field] == 0 && strings.Contains(fe.Field, ".") { // a key not given: named on its item's line
		i := strings.LastIndex(field, ".")
		field, reason = field[:i], field[i+1:]+" "+reason
	}
	return f.errorf(field, "%s", reason)
}
