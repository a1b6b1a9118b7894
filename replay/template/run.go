package template

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/buildinfo"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/mask"
)

// ErrCheckFailed: a validation check of the template did not hold. Nothing
// was written to the target.
var ErrCheckFailed = errors.New("replay template: a check failed")

// ErrEmptyWindow: a group target's window resolved to no event, so no
// group was created. It matches ErrCheckFailed (an implicit check).
var ErrEmptyWindow = fmt.Errorf("%w: the window of a group target must hold events", ErrCheckFailed)

// CheckResult is one validation check.
type CheckResult struct {
	Name string `json:"name"` // events, min_events, max_events, digest, types.T
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// Report is what a plan found in the window, and what a run did.
type Report struct {
	Template   string            `json:"template"`
	Version    string            `json:"version"`
	Hash       string            `json:"template_hash"`
	Target     string            `json:"target"`
	Production bool              `json:"production"`
	Params     map[string]string `json:"params,omitempty"`
	// Window is the replay's result over the source: the window resolved to
	// positions, the events in it and their digest (of the source's data,
	// before masking).
	Window replay.Result    `json:"window"`
	Types  map[string]int64 `json:"types"`
	// Masking says whether the target receives masked data. MaskedEvents
	// counts the events whose data a rule changed, MaskedValues the values
	// masked, hashed or dropped; MaskKeyID names the hashing key.
	Masking      bool          `json:"masking"`
	MaskedEvents int64         `json:"masked_events"`
	MaskedValues int64         `json:"masked_values"`
	MaskKeyID    string        `json:"mask_key_id,omitempty"`
	Checks       []CheckResult `json:"checks,omitempty"`
	// Executed is true when the run wrote to its target (or, for a verify
	// target, ran as a recorded run). Written counts the events new in the
	// target; AlreadyPresent those the target held already, under the same
	// id (an earlier run of the window, or an interrupted one), which the
	// store's idempotent append left as they were. The records of soft
	// deletes are not copied and count in neither.
	Executed       bool   `json:"executed"`
	Written        int64  `json:"written"`
	AlreadyPresent int64  `json:"already_present"`
	RunID          string `json:"run_id,omitempty"`
	// Group is the consumer group a group target created: bounded to the
	// window, it delivers its events to its members.
	Group *consumer.GroupInfo `json:"group,omitempty"`

	// delivers counts the window's events a consumer group delivers: all
	// but those of the engine's own streams (consumer.SystemStreamPrefix).
	delivers int64
}

// ChecksPassed reports whether every check held.
func (r *Report) ChecksPassed() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func (r *Report) failedChecks() string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, fmt.Sprintf("%s: want %s, got %s", c.Name, c.Want, c.Got))
		}
	}
	return strings.Join(out, "; ")
}

// Shown returns a copy of r fit to print: the passwords of the connection
// strings in every text field masked (audit.MaskText), whatever field a
// DSN went into — the template's name or version, a parameter, the
// target, an event type, a check, the group. Plan and Execute return
// reports shown so already; printers call it again, the one point every
// printed field passes.
func (r *Report) Shown() *Report {
	if r == nil {
		return nil
	}
	out := *r
	out.Template, out.Version, out.Target = audit.MaskText(r.Template), audit.MaskText(r.Version), audit.MaskText(r.Target)
	out.MaskKeyID, out.RunID = audit.MaskText(r.MaskKeyID), audit.MaskText(r.RunID)
	if r.Params != nil {
		out.Params = make(map[string]string, len(r.Params))
		for k, v := range r.Params {
			out.Params[audit.MaskText(k)] = audit.MaskText(v)
		}
	}
	if r.Types != nil {
		out.Types = make(map[string]int64, len(r.Types))
		for typ, n := range r.Types {
			out.Types[audit.MaskText(typ)] += n
		}
	}
	out.Checks = nil
	for _, c := range r.Checks {
		c.Name, c.Want, c.Got = audit.MaskText(c.Name), audit.MaskText(c.Want), audit.MaskText(c.Got)
		out.Checks = append(out.Checks, c)
	}
	if g := r.Group; g != nil {
		shown := *g
		shown.Config.Name = audit.MaskText(g.Config.Name)
		shown.Config.OrderBy = audit.MaskText(g.Config.OrderBy)
		shown.StatusReason = audit.MaskText(g.StatusReason)
		shown.Config.Filter.StreamPrefix = audit.MaskText(g.Config.Filter.StreamPrefix)
		shown.Config.Filter.Types = nil
		for _, typ := range g.Config.Filter.Types {
			shown.Config.Filter.Types = append(shown.Config.Filter.Types, audit.MaskText(typ))
		}
		out.Group = &shown
	}
	return &out
}

// hideSecrets replaces what holds a secret parameter's value by "***",
// and masks the passwords of connection strings in every text (Shown).
func (r *Report) hideSecrets(sp *Spec) {
	r.Target = sp.Hide(r.Target)
	if sp.Secret("target") {
		r.Target = Masked
	}
	if sp.Secret("checks") {
		for i := range r.Checks {
			r.Checks[i].Want = Masked
		}
	}
	if sp.Secret("filter.types") {
		types := map[string]int64{}
		for typ, n := range r.Types {
			types[sp.Hide(typ)] += n
		}
		r.Types = types
	}
	if g := r.Group; g != nil {
		shown := *g
		shown.Config.Name = sp.Hide(g.Config.Name)
		shown.Config.Filter.StreamPrefix = sp.Hide(g.Config.Filter.StreamPrefix)
		shown.Config.Filter.Types = nil
		for _, typ := range g.Config.Filter.Types {
			shown.Config.Filter.Types = append(shown.Config.Filter.Types, sp.Hide(typ))
		}
		r.Group = &shown
	}
	*r = *r.Shown()
}

// hiddenError is an error whose message shows no secret parameter's value
// (Spec.Hide); errors.Is and errors.As see the error it hides.
type hiddenError struct {
	err error
	msg string
}

func (e *hiddenError) Error() string { return e.msg }
func (e *hiddenError) Unwrap() error { return e.err }

// hideError returns err with the secret parameters' values hidden from its
// message.
func hideError(sp *Spec, err error) error {
	if err == nil {
		return nil
	}
	if msg := sp.Hide(err.Error()); msg != err.Error() {
		return &hiddenError{err: err, msg: msg}
	}
	return err
}

// Masked is what a secret parameter's value is shown and recorded as.
const Masked = "***"

// Plan reads the spec's window in the source, once, without pacing and
// without writing anything: it resolves the window, counts the events (by
// type), computes their digest, checks that every event the target would
// receive can be masked, and evaluates the checks. An event that cannot
// be masked ends the plan with an *mask.UnmaskableError.
func (t *Template) Plan(ctx context.Context, src rewind.Store, sp *Spec, m *mask.Masker) (*Report, error) {
	rep, err := t.plan(ctx, src, sp, m)
	return rep, hideError(sp, err)
}

func (t *Template) plan(ctx context.Context, src rewind.Store, sp *Spec, m *mask.Masker) (*Report, error) {
	rep := &Report{Template: t.Name, Version: t.Version, Hash: t.Hash, Target: sp.Target.String(), Production: t.Production,
		Params: sp.Params, Types: map[string]int64{}, Masking: sp.Masking}

	if sp.Masking {
		rep.MaskKeyID = m.KeyID()
	}
	res, err := replay.Run(ctx, src, sp.Window, func(_ context.Context, ev *rewind.RecordedEvent) error {
		rep.Types[ev.Type]++
		if !strings.HasPrefix(ev.Stream, consumer.SystemStreamPrefix) {
			rep.delivers++
		}
		if sp.Masking && ev.Type != rewind.TypeStreamDeleted {
			_, n, err := m.Event(ev)
			if err != nil {
				return err
			}
			if n > 0 {
				rep.MaskedEvents++
				rep.MaskedValues += int64(n)
			}
		}
		return nil
	}, replay.Options{Digest: true})
	rep.Window = res
	if err != nil {
		return rep, unwrapUnmaskable(err)
	}
	rep.Checks = sp.Checks.evaluate(rep)
	rep.hideSecrets(sp)
	return rep, nil
}

// unwrapUnmaskable returns the *mask.UnmaskableError inside err, whose
// message names the event already.
func unwrapUnmaskable(err error) error {
	var ue *mask.UnmaskableError
	if errors.As(err, &ue) {
		return ue
	}
	return err
}

func (c *Checks) evaluate(rep *Report) []CheckResult {
	var out []CheckResult
	n := rep.Window.Events
	count := func(name string, want *int64, ok func(int64) bool) {
		if want != nil {
			out = append(out, CheckResult{Name: name, Want: fmt.Sprint(*want), Got: fmt.Sprint(n), OK: ok(*want)})
		}
	}
	count("events", c.Events, func(w int64) bool { return n == w })
	count("min_events", c.MinEvents, func(w int64) bool { return n >= w })
	count("max_events", c.MaxEvents, func(w int64) bool { return n <= w })
	if c.Digest != "" {
		out = append(out, CheckResult{Name: "digest", Want: c.Digest, Got: rep.Window.Digest, OK: c.Digest == rep.Window.Digest})
	}
	for _, typ := range slices.Sorted(maps.Keys(c.Types)) {
		got := rep.Types[typ]
		out = append(out, CheckResult{Name: "types." + typ, Want: fmt.Sprint(c.Types[typ]), Got: fmt.Sprint(got), OK: got == c.Types[typ]})
	}
	return out
}

// Ledger is where runs are recorded: an audit ledger (auditpg.Ledger).
type Ledger interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
}

// RunOptions say how to execute a template.
type RunOptions struct {
	// Ledger records the run. Required.
	Ledger Ledger
	// Origin is who runs it (audit.CurrentOrigin).
	Origin audit.Origin
	// RunID names the run in the ledger (the entries' subject).
	RunID string
	// Masker masks the data the target receives when Spec.Masking.
	Masker *mask.Masker
	// OpenTarget opens the target store. It is called only once the run
	// is recorded and its checks hold; Execute closes what it returns.
	// Called for a store target only.
	OpenTarget func() (rewind.Store, error)
	// CreateGroup creates a consumer group in the source store (an
	// engine's or a client's CreateGroup). Called for a group target only,
	// once the run is recorded and its checks hold.
	CreateGroup func(ctx context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error)
}

// Execute runs the spec and records it in the ledger.
//
// It appends replay.run.started before reading anything (a ledger that
// cannot be written stops the run there: nothing is written to the
// target), then plans (Plan). Failed checks or an event that cannot be
// masked end the run before the target is opened: nothing is written. It
// then replays the window resolved by the plan, by position, with pacing,
// into the target, each event's data masked when sp.Masking, and checks
// that it delivered the events the plan saw (the same digest). The run
// ends with replay.run.finished, or replay.run.failed with the error.
func (t *Template) Execute(ctx context.Context, src rewind.Store, sp *Spec, o RunOptions) (*Report, error) {
	if o.Ledger == nil {
		return nil, &rewind.ValidationError{Field: "ledger", Reason: "a replay run is recorded in the audit ledger: give one"}
	}
	// Recorded in every entry and printed by `rewind audit log`: the
	// actor, host, build and command line (the source --data-dir in it)
	// are refused, as backfill refuses its own, before anything is recorded.
	if err := audit.CheckOrigin(o.Origin); err != nil {
		return nil, err
	}
	if sp.Masking && o.Masker == nil {
		return nil, &rewind.ValidationError{Field: "masker", Reason: "the template masks fields: give a masker"}
	}
	base := t.attrs(sp, o)
	entry := func(kind string, attrs map[string]string, counts map[string]int64, msg string) audit.Entry {
		a := maps.Clone(base)
		maps.Copy(a, attrs)
		for k, v := range a {
			a[k] = sp.Hide(v)
		}
		msg = sp.Hide(msg)
		return audit.Entry{Kind: "replay.run." + kind, Subject: o.RunID, Origin: o.Origin, Attrs: a, Counts: counts, Message: msg}
	}
	if _, err := o.Ledger.Append(ctx, entry("started", nil, nil, "")); err != nil {
		return nil, fmt.Errorf("replay: record the run in the audit ledger (nothing was replayed): %w", err)
	}
	rep, err := t.execute(ctx, src, sp, o)
	if rep != nil {
		rep.RunID = o.RunID
	}
	counts := map[string]int64{}
	attrs := map[string]string{}
	if rep != nil {
		counts = map[string]int64{"events": rep.Window.Events, "written": rep.Written, "already_present": rep.AlreadyPresent,
			"masked_events": rep.MaskedEvents, "masked_values": rep.MaskedValues}
		attrs = map[string]string{"from": rep.Window.From.String(), "to": rep.Window.To.String(), "digest": rep.Window.Digest}
		if len(rep.Checks) > 0 {
			attrs["checks"] = "passed"
			if !rep.ChecksPassed() {
				attrs["checks"] = "failed: " + rep.failedChecks()
			}
		}
	}
	kind, msg := "finished", ""
	if err != nil {
		kind, msg = "failed", err.Error()
	}
	// The outcome is recorded even when ctx was cancelled (an interrupted
	// run is still a run).
	if _, lerr := o.Ledger.Append(context.WithoutCancel(ctx), entry(kind, attrs, counts, msg)); lerr != nil && err == nil {
		err = fmt.Errorf("replay: the run finished but its outcome could not be recorded in the audit ledger: %w", lerr)
	}
	if rep != nil {
		rep.hideSecrets(sp)
	}
	return rep, hideError(sp, err)
}

func (t *Template) execute(ctx context.Context, src rewind.Store, sp *Spec, o RunOptions) (*Report, error) {
	rep, err := t.plan(ctx, src, sp, o.Masker)
	if err != nil {
		return rep, err
	}
	if !rep.ChecksPassed() {
		return rep, fmt.Errorf("%w (nothing was written): %s", ErrCheckFailed, rep.failedChecks())
	}
	rep.Executed = true
	if !sp.Target.Writes() {
		return rep, nil
	}
	if sp.Target.Kind == "group" {
		return rep, createGroup(ctx, sp, rep, o)
	}
	dst, err := o.OpenTarget()
	if err != nil {
		return rep, fmt.Errorf("replay: open the target %s: %w", rep.Target, err)
	}
	defer dst.Close()
	// The same events as the plan: its window by position, the same filters.
	w := sp.Window
	w.From, w.To = replay.AtPosition(rep.Window.From), replay.AtPosition(rep.Window.To)
	if rep.Window.From > rep.Window.To {
		return rep, nil // empty
	}
	res, err := replay.Run(ctx, src, w, func(ctx context.Context, ev *rewind.RecordedEvent) error {
		if ev.Type == rewind.TypeStreamDeleted {
			return nil
		}
		out := ev
		if sp.Masking {
			var err error
			if out, _, err = o.Masker.Event(ev); err != nil {
				return err
			}
		}
		// As replay.IntoStore appends, with the outcome counted: an event
		// the target holds already (same id) is a duplicate, not written.
		res, err := dst.Append(ctx, out.Stream, rewind.Any, out.Event)
		if err != nil && outcomeUnknown(ctx, err) {
			// The run was interrupted (or the store could not tell) while
			// the append waited for durability: it may be written. The
			// same append again, with the same id, settles it, so that
			// the run's written count is exact; the run still fails.
			settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			res, _ = dst.Append(settle, out.Stream, rewind.Any, out.Event)
			cancel()
			if res.LastPosition != 0 {
				rep.Written++ // by the first attempt or by this one
			}
		}
		if err != nil {
			return err
		}
		if res.Duplicate {
			rep.AlreadyPresent++
		} else {
			rep.Written++
		}
		return nil
	}, replay.Options{Digest: true, Pacing: sp.Pacing})
	if err != nil {
		return rep, unwrapUnmaskable(err)
	}
	if res.Digest != rep.Window.Digest {
		return rep, fmt.Errorf("replay: the window changed between the plan and the copy (digest %s, then %s; retention removed events?): "+
			"the target holds %d events of it", rep.Window.Digest, res.Digest, rep.Written+rep.AlreadyPresent)
	}
	return rep, nil
}

// outcomeUnknown reports whether err, from an append with ctx, leaves it
// open whether the append was written (see rewind.Store's Append).
func outcomeUnknown(ctx context.Context, err error) bool {
	return errors.Is(err, rewind.ErrOutcomeUnknown) || (ctx.Err() != nil && errors.Is(err, ctx.Err()))
}

// createGroup creates the bounded group of a group target: the window the
// plan resolved, by position, with the template's prefix and types.
func createGroup(ctx context.Context, sp *Spec, rep *Report, o RunOptions) error {
	if o.CreateGroup == nil {
		return &rewind.ValidationError{Field: "create group", Reason: "a group target creates a consumer group: give CreateGroup"}
	}
	from, to := rep.Window.From, rep.Window.To
	if from > to {
		return fmt.Errorf("%w (it resolved to %d..%d): no group was created", ErrEmptyWindow, from, to)
	}
	// Positions alone are not enough: a window whose events the filter
	// leaves out (or that holds only the engine's own events) would make a
	// group with nothing to deliver.
	if rep.delivers == 0 {
		return fmt.Errorf("%w (it resolved to %d..%d, which holds no event the group would deliver: %d events, "+
			"none that its filter selects outside the engine's own %s streams): no group was created",
			ErrEmptyWindow, from, to, rep.Window.Events, consumer.SystemStreamPrefix+"*")
	}
	cfg := consumer.GroupConfig{Name: sp.Target.Group, OrderBy: sp.Target.OrderBy,
		Filter: rewind.Filter{StreamPrefix: sp.Window.StreamPrefix, Types: sp.Window.Types},
		Start:  consumer.Start{Kind: consumer.StartPosition, Position: max(from, 1) - 1},
		End:    consumer.End{Position: to}}
	in, err := o.CreateGroup(ctx, cfg)
	if err != nil {
		return fmt.Errorf("replay: create group %s: %w", sp.Target.Group, err)
	}
	rep.Group = &in
	return nil
}

// attrs are what every entry of a run repeats.
func (t *Template) attrs(sp *Spec, o RunOptions) map[string]string {
	a := map[string]string{"template": t.Name, "template_version": t.Version, "template_hash": t.Hash,
		"template_file": t.Path, "binary": buildinfo.Identity(), "target": hide(sp, "target", sp.Target.String()),
		"production": fmt.Sprint(t.Production), "masked": fmt.Sprint(sp.Masking)}
	w := sp.Window
	if !w.From.IsZero() {
		a["window.from"] = hide(sp, "window.from", w.From.String())
	}
	if !w.To.IsZero() {
		a["window.to"] = hide(sp, "window.to", w.To.String())
	}
	if w.StreamPrefix != "" {
		a["filter.prefix"] = hide(sp, "filter.prefix", w.StreamPrefix)
	}
	if len(w.Streams) > 0 {
		a["filter.streams"] = hide(sp, "filter.streams", strings.Join(w.Streams, ","))
	}
	if len(w.Types) > 0 {
		a["filter.types"] = hide(sp, "filter.types", strings.Join(w.Types, ","))
	}
	if len(sp.Mask) > 0 {
		a["mask_rules"] = describeRules(sp.Mask)
	}
	if sp.Masking && o.Masker != nil && o.Masker.KeyID() != "" {
		a["mask_key_id"] = o.Masker.KeyID()
	}
	for k, v := range sp.Params {
		a["param."+k] = audit.MaskDSN(v)
	}
	return a
}

// hide is v as recorded: "***" when a secret parameter went into it, and
// with the passwords of DSNs in it masked.
func hide(sp *Spec, field, v string) string {
	if sp.Secret(field) {
		return Masked
	}
	return audit.MaskDSN(v)
}

// describeRules writes rules as TYPE:PATH ACTION, sorted, joined by
// ", ". Not PATH=ACTION: the ledger masks what follows "password=" in
// every attribute (audit.MaskEntry), and a rule of a field named password
// must still say what happens to it.
func describeRules(r mask.Rules) string {
	var out []string
	for typ, rules := range r {
		for _, x := range rules {
			out = append(out, fmt.Sprintf("%s:%s %s", typ, x.Path, x.Action))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
