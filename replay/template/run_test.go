package template_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/replay/mask"
	"github.com/rewindhq/rewind/replay/template"
	"github.com/rewindhq/rewind/store"
)

var ctx = context.Background()

const planted = "PLANTED-S3CRET-4111"

var testKey = []byte("a-test-key-of-enough-bytes")

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shapes are events holding the planted secret where the masking template
// below declares it sensitive, in every shape a path can meet.
var shapes = []struct {
	stream, typ, data string
}{
	{"users-1", "UserRegistered", `{"email":"` + planted + `","name":"Ann"}`},
	{"users-2", "UserRegistered", `{"email":"` + planted + `","card":{"number":"` + planted + `","brand":"visa"}}`},
	{"users-3", "UserRegistered", `{"name":"no secret here"}`},                                // missing paths
	{"users-4", "UserRegistered", `{"card":"` + planted + `","email":null}`},                  // a string where an object is expected
	{"users-5", "UserRegistered", `{"card":["` + planted + `"],"email":["` + planted + `"]}`}, // lists where objects are
	{"orders-1", "OrderPlaced", `{"items":[{"sku":"A","note":"` + planted + `"},{"sku":"B"},"` + planted + `"],"n":1}`},
	{"orders-2", "OrderPlaced", `{"items":{"note":"` + planted + `"}}`}, // an object where a list is expected
	{"orders-3", "OrderPlaced", `{"deep":{"a":[{"b":{"ssn":"` + planted + `"}}]}}`},
	{"orders-4", "OrderPlaced", `{"password":"` + planted + `"}`},
	{"batch-1", "Batch", `[{"ssn":"` + planted + `","k":1},{"k":2}]`},
	{"batch-2", "Batch", `[{"ssn":"S\u0033CRET-escaped"}]`},
	{"other-1", "Unrelated", `{"public":"kept as is"}`},
	{"other-2", "Binary", "\x00\x01 not json at all"}, // a type without rules: passes
}

const maskingTemplate = `name: staging-copy
version: 7
params:
  dest: {type: text, required: true}
  token: {type: text, secret: true, default: xyz}
target:
  kind: store
  data_dir: ${dest}
filter:
  types: [UserRegistered, OrderPlaced, Batch, Unrelated, Binary, "${token}"]
mask:
  UserRegistered:
    email: hash
    card.number: mask
  OrderPlaced:
    items[].note: drop
    deep.a[].b.ssn: hash
    password: drop
  Batch:
    "[].ssn": mask
`

func source(t *testing.T) (*store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, dir)
	t.Cleanup(func() { s.Close() })
	for _, e := range shapes {
		if _, err := s.Append(ctx, e.stream, rewind.Any, rewind.Event{Type: e.typ, Data: []byte(e.data), ContentType: "application/octet-stream"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteStream(ctx, "users-3", rewind.Any); err != nil { // a delete record in the window
		t.Fatal(err)
	}
	return s, dir
}

func ledger(t *testing.T) *auditpg.Ledger {
	t.Helper()
	db := pgtest.New(t)
	l, err := auditpg.New(db.Pool, auditpg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func entries(t *testing.T, l *auditpg.Ledger) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for e, err := range l.Entries(ctx, auditpg.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if _, err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	return out
}

// grepDir reports the files under dir that hold s.
func grepDir(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func execute(t *testing.T, src rewind.Store, file string, l template.Ledger, params ...string) (*template.Report, error, bool) {
	t.Helper()
	tp, err := template.Parse("t.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(params)
	if err != nil {
		t.Fatal(err)
	}
	var m *mask.Masker
	if sp.Masking {
		if m, err = mask.New(sp.Mask, testKey); err != nil {
			t.Fatal(err)
		}
	}
	opened := false
	rep, err := tp.Execute(ctx, src, sp, template.RunOptions{Ledger: l, RunID: "run-" + t.Name(), Masker: m,
		Origin: audit.CurrentOrigin("tester", []string{"rewind", "replay", "run"}, tp.SecretParams()),
		OpenTarget: func() (rewind.Store, error) {
			opened = true
			return openStore(t, sp.Target.DataDir), nil
		}})
	return rep, err, opened
}

func TestExecuteMasksEveryShape(t *testing.T) {
	t.Parallel()
	src, srcDir := source(t)
	l := ledger(t)
	if len(grepDir(t, srcDir, planted)) == 0 {
		t.Fatal("the source does not hold the planted secret: the grep below proves nothing")
	}
	masked := filepath.Join(t.TempDir(), "masked")
	rep, err, _ := execute(t, src, maskingTemplate, l, "dest="+masked)
	if err != nil {
		t.Fatal(err)
	}
	if hits := grepDir(t, masked, planted); len(hits) > 0 {
		t.Fatalf("the planted secret reached the target: %v", hits)
	}
	if hits := grepDir(t, masked, "S3CRET-escaped"); len(hits) > 0 {
		t.Fatalf("an escaped secret reached the target: %v", hits)
	}
	if rep.Written != int64(len(shapes)) || !rep.Masking || rep.MaskedEvents != 10 || rep.MaskKeyID == "" {
		t.Fatalf("report %+v", rep)
	}
	// What the target holds: masked where declared, the rest as it was.
	dst := openStore(t, masked)
	defer dst.Close()
	got := map[string]string{}
	for ev, err := range dst.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got[ev.Stream] = string(ev.Data)
	}
	h := func(s string) string {
		m, _ := mask.New(func() mask.Rules { r := mask.Rules{}; _ = r.Add("X", "v", mask.Hash); return r }(), testKey)
		out, _, _ := m.Apply(&rewind.RecordedEvent{Event: rewind.Event{Type: "X", Data: []byte(`{"v":"` + s + `"}`)}})
		return string(out)[6 : len(out)-2]
	}
	for stream, want := range map[string]string{
		"users-1":  `{"email":"` + h(planted) + `","name":"Ann"}`,
		"users-3":  `{"name":"no secret here"}`,
		"users-4":  `{"card":"***","email":null}`,
		"orders-1": `{"items":[{"sku":"A"},{"sku":"B"}],"n":1}`,
		"orders-2": `{}`,
		"orders-4": `{}`,
		"batch-1":  `[{"k":1,"ssn":"***"},{"k":2}]`,
		"other-1":  `{"public":"kept as is"}`,
		"other-2":  "\x00\x01 not json at all",
	} {
		if got[stream] != want {
			t.Errorf("%s: %s, want %s", stream, got[stream], want)
		}
	}
	// The ledger: started and finished, marked masked, the secret parameter masked.
	es := entries(t, l)
	if len(es) != 2 || es[0].Kind != "replay.run.started" || es[1].Kind != "replay.run.finished" {
		t.Fatalf("ledger %+v", es)
	}
	for _, e := range es {
		a := e.Attrs
		if a["masked"] != "true" || a["template"] != "staging-copy" || a["template_version"] != "7" || len(a["template_hash"]) != 64 ||
			a["param.dest"] != masked || a["param.token"] != "***" || a["binary"] == "" || a["mask_key_id"] != rep.MaskKeyID ||
			e.Actor != "tester" || e.Subject != "run-"+t.Name() {
			t.Fatalf("entry %+v", e)
		}
	}
	if c := es[1].Counts; c["events"] != int64(len(shapes)) || c["written"] != int64(len(shapes)) || c["masked_events"] != 10 ||
		es[1].Attrs["digest"] != rep.Window.Digest {
		t.Fatalf("finished entry %+v", es[1])
	}

	// The same window as production: unmasked, so the grep above can fail.
	prod := filepath.Join(t.TempDir(), "prod")
	rep, err, _ = execute(t, src, "production: true\n"+maskingTemplate, l, "dest="+prod)
	if err != nil || rep.Masking {
		t.Fatalf("%+v %v", rep, err)
	}
	if len(grepDir(t, prod, planted)) == 0 {
		t.Fatal("a production copy lacks the secret: the grep cannot see it")
	}
	if es := entries(t, l); es[len(es)-1].Attrs["masked"] != "false" || es[len(es)-1].Attrs["production"] != "true" {
		t.Fatalf("production entry %+v", es[len(es)-1])
	}

	// Hashes are stable across runs with one key: a second masked copy is identical.
	again := filepath.Join(t.TempDir(), "again")
	if _, err, _ := execute(t, src, maskingTemplate, l, "dest="+again); err != nil {
		t.Fatal(err)
	}
	d2 := openStore(t, again)
	defer d2.Close()
	for ev, err := range d2.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil || got[ev.Stream] != string(ev.Data) {
			t.Fatalf("%s: %s, first run %s (%v)", ev.Stream, ev.Data, got[ev.Stream], err)
		}
	}
}

func TestExecuteWritesNothingWhenItCannotMask(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	if _, err := src.Append(ctx, "users-9", rewind.Any, rewind.Event{Type: "UserRegistered", Data: []byte("email=" + planted),
		ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	l := ledger(t)
	dest := filepath.Join(t.TempDir(), "dst")
	_, err, opened := execute(t, src, maskingTemplate, l, "dest="+dest)
	var ue *mask.UnmaskableError
	if !errors.As(err, &ue) || ue.Stream != "users-9" || opened || strings.Contains(err.Error(), planted) {
		t.Fatalf("err %v, target opened %v", err, opened)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the target was created: %v", err)
	}
	es := entries(t, l)
	if len(es) != 2 || es[1].Kind != "replay.run.failed" || !strings.Contains(es[1].Message, "cannot be masked") {
		t.Fatalf("ledger %+v", es)
	}
	// Rules of every type ("*") apply to every event: a list-rooted event
	// (Batch) has no top-level keys to look in, and is refused.
	_, err, opened = execute(t, src, strings.Replace(maskingTemplate, "  UserRegistered:\n", "  \"*\":\n    ssn: mask\n  UserRegistered:\n", 1),
		l, "dest="+dest)
	if !errors.As(err, &ue) || ue.Type != "Batch" || opened {
		t.Fatalf("every type's rule on a list: %v", err)
	}
}

func TestExecuteChecks(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	l := ledger(t)
	verify := "name: v\nversion: 1\ntarget: {kind: verify}\n"
	rep, err, opened := execute(t, src, verify, l)
	if err != nil || opened || !rep.Executed || rep.Written != 0 || rep.Window.Events != int64(len(shapes))+1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	digest := rep.Window.Digest
	// The digest and counts as checks: they hold.
	checks := "checks:\n  events: 14\n  digest: " + digest + "\n  types: {Batch: 2, UserRegistered: 5}\n"
	if rep, err, _ = execute(t, src, verify+checks, l); err != nil || len(rep.Checks) != 4 || !rep.ChecksPassed() {
		t.Fatalf("%+v %v", rep, err)
	}
	// A check that fails: into a store, nothing is written.
	dest := filepath.Join(t.TempDir(), "dst")
	bad := strings.Replace(maskingTemplate, "mask:\n", "checks:\n  max_events: 3\n  types: {Batch: 1}\nmask:\n", 1)
	rep, err, opened = execute(t, src, bad, l, "dest="+dest)
	if !errors.Is(err, template.ErrCheckFailed) || opened || rep.Executed || rep.ChecksPassed() {
		t.Fatalf("failed checks: %+v %v opened %v", rep, err, opened)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the target was created: %v", err)
	}
	es := entries(t, l)
	last := es[len(es)-1]
	if last.Kind != "replay.run.failed" || !strings.Contains(last.Attrs["checks"], "max_events: want 3, got 13") ||
		!strings.Contains(last.Attrs["checks"], "types.Batch") {
		t.Fatalf("failed entry %+v", last)
	}
	// A window of positions: the digest over the same positions is the same.
	rep1, err, _ := execute(t, src, verify+"window: {from: 3, to: 5}\n", l)
	rep2, err2, _ := execute(t, src, verify+"window: {from: 3, to: 5}\n", l)
	if err != nil || err2 != nil || rep1.Window.Digest != rep2.Window.Digest || rep1.Window.Events != 3 {
		t.Fatalf("%+v %+v %v %v", rep1, rep2, err, err2)
	}
}

func TestExecuteNeedsTheLedgerFirst(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	db := pgtest.New(t)
	l, err := auditpg.New(db.Pool, auditpg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// No ledger tables: the first append fails, and nothing is replayed.
	dest := filepath.Join(t.TempDir(), "dst")
	_, err, opened := execute(t, src, maskingTemplate, l, "dest="+dest)
	if err == nil || opened || !strings.Contains(err.Error(), "nothing was replayed") {
		t.Fatalf("%v, opened %v", err, opened)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the target was created: %v", err)
	}
}

// TestExecuteMasksMetadata: a template's metadata:KEY rules mask, hash or
// drop metadata values in the copy — also of events whose data is not JSON
// — so that no file of the target holds the planted secret, while a
// production copy does.
func TestExecuteMasksMetadata(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := openStore(t, dir)
	t.Cleanup(func() { src.Close() })
	for i, e := range []rewind.Event{
		{Type: "Login", Data: []byte(`{"user":"u1"}`), Metadata: map[string]string{"ip": planted, "token": planted, "trace": "t-1"}},
		{Type: "Blob", Data: []byte("raw, not JSON"), Metadata: map[string]string{"ip": planted}},
		{Type: "Other", Data: []byte(`{}`), Metadata: map[string]string{"trace": "t-2"}},
	} {
		if _, err := src.Append(ctx, "s-"+string(rune('a'+i)), rewind.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	l := ledger(t)
	const tpl = `name: meta
version: 1
params:
  dest: {type: text, required: true}
target: {kind: store, data_dir: "${dest}"}
mask:
  Login:
    metadata:token: drop
  "*":
    metadata:ip: hash
`
	masked := filepath.Join(t.TempDir(), "masked")
	rep, err, _ := execute(t, src, tpl, l, "dest="+masked)
	if err != nil {
		t.Fatal(err)
	}
	if rep.MaskedEvents != 2 || rep.MaskedValues != 3 || rep.Written != 3 {
		t.Fatalf("report: %d events, %d values masked, %d written; want 2, 3, 3", rep.MaskedEvents, rep.MaskedValues, rep.Written)
	}
	if hits := grepDir(t, masked, planted); len(hits) > 0 {
		t.Fatalf("the planted secret reached the target: %v", hits)
	}
	dst := openStore(t, masked)
	got := map[string]map[string]string{}
	for ev, err := range dst.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got[ev.Type] = ev.Metadata
	}
	dst.Close()
	if m := got["Login"]; len(m) != 2 || len(m["ip"]) != 64 || m["trace"] != "t-1" {
		t.Fatalf("Login metadata %v, want ip hashed, token dropped, trace kept", m)
	}
	if got["Blob"]["ip"] != got["Login"]["ip"] || got["Other"]["trace"] != "t-2" {
		t.Fatalf("metadata %v", got)
	}
	prod := filepath.Join(t.TempDir(), "prod")
	if _, err, _ := execute(t, src, "production: true\n"+tpl, l, "dest="+prod); err != nil {
		t.Fatal(err)
	}
	if len(grepDir(t, prod, planted)) == 0 {
		t.Fatal("a production copy lacks the secret: the grep cannot see it")
	}
}

// TestExecuteGroupTargetEmptyWindow: a group target whose window holds no
// event the group would deliver — none at all, none its prefix or types
// select, or only the engine's own _rewind.* events — fails with
// ErrEmptyWindow (exit 5), recorded as replay.run.failed, and creates no
// group. A filtered empty window used to create a group with nothing to
// deliver.
func TestExecuteGroupTargetEmptyWindow(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	// The engine's own streams: a group never delivers their events.
	if _, err := src.Append(ctx, "_rewind.group.x", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
	last, err := src.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := ledger(t)
	head := "name: g\nversion: 1\ntarget: {kind: group, group: g}\n"
	for name, file := range map[string]string{
		"positions after the end":    head + "window: {from: 1000}\n",
		"a prefix that selects none": head + "window: {from: 1, to: 5}\nfilter: {prefix: orders-}\n",
		"types that select none":     head + "filter: {types: [Nope]}\n",
		"only the engine's events":   head + "window: {from: " + last.String() + "}\n",
	} {
		tp, err := template.Parse("t.yaml", []byte(file))
		if err != nil {
			t.Fatal(err)
		}
		sp, err := tp.Resolve(nil)
		if err != nil {
			t.Fatal(err)
		}
		created := false
		_, err = tp.Execute(ctx, src, sp, template.RunOptions{Ledger: l, RunID: "run",
			Origin: audit.CurrentOrigin("tester", []string{"rewind", "replay", "run"}, nil),
			CreateGroup: func(context.Context, consumer.GroupConfig) (consumer.GroupInfo, error) {
				created = true
				return consumer.GroupInfo{}, nil
			}})
		if !errors.Is(err, template.ErrEmptyWindow) || !errors.Is(err, template.ErrCheckFailed) || created ||
			!strings.Contains(err.Error(), "no group was created") {
			t.Errorf("%s: %v, created %v; want ErrEmptyWindow and no group", name, err, created)
		}
		es := entries(t, l)
		if e := es[len(es)-1]; e.Kind != "replay.run.failed" || !strings.Contains(e.Message, "no group was created") {
			t.Errorf("%s: last ledger entry %s %q, want replay.run.failed saying no group was created", name, e.Kind, e.Message)
		}
	}
	// A window with one event the group delivers creates it.
	tp, _ := template.Parse("t.yaml", []byte(head+"window: {from: 1, to: 5}\nfilter: {prefix: users-1}\n"))
	sp, _ := tp.Resolve(nil)
	var got consumer.GroupConfig
	if _, err := tp.Execute(ctx, src, sp, template.RunOptions{Ledger: l, RunID: "run",
		Origin: audit.CurrentOrigin("tester", nil, nil),
		CreateGroup: func(_ context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error) {
			got = cfg
			return consumer.GroupInfo{}, nil
		}}); err != nil || got.End.Position != 5 || got.Filter.StreamPrefix != "users-1" {
		t.Fatalf("a window with an event: %v, created %+v", err, got)
	}
}

// TestExecuteRefusesAnActorThatIsNotPlainText: the run's actor is checked
// as backfill checks its own (audit.CheckActor), and the rest of its origin
// too (audit.CheckOrigin): one holding a control, format or invisible
// character is refused before anything is recorded or replayed.
func TestExecuteRefusesAnActorThatIsNotPlainText(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	l := ledger(t)
	tp, err := template.Parse("t.yaml", []byte("name: t\nversion: 1\ntarget: {kind: verify}\n"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, actor := range []string{"eve\n 999 forged", "\x1b[31mred", "a\tb", "ev\u202eil", "bad\xffutf8"} {
		o := audit.CurrentOrigin(actor, nil, nil)
		_, err := tp.Execute(ctx, src, sp, template.RunOptions{Ledger: l, RunID: "r", Origin: o})
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "actor") {
			t.Errorf("actor %q: %v, want an invalid argument naming the actor", actor, err)
		}
	}
	// The rest of the origin is recorded in every entry too: a command
	// line (the source --data-dir in it) or a host that is not plain text.
	for field, o := range map[string]audit.Origin{
		"command": audit.CurrentOrigin("alice", []string{"rewind", "--data-dir=/srv/x\n 999 forged", "replay", "run", "t.yaml"}, nil),
		"host":    {Actor: "alice", Host: "h\u034f1"},
		"actor":   audit.CurrentOrigin("\u3164", nil, nil),
	} {
		_, err := tp.Execute(ctx, src, sp, template.RunOptions{Ledger: l, RunID: "r", Origin: o})
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v, want an invalid argument naming the %s", field, err, field)
		}
	}
	if got := entries(t, l); len(got) != 0 {
		t.Fatalf("refused runs recorded %d entries", len(got))
	}
}

// TestMaskRuleOfATypeTheWindowLacks: a mask rule for a valid type the
// window holds no event of is fine; only a name that is no event type is
// refused.
func TestMaskRuleOfATypeTheWindowLacks(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	l := ledger(t)
	dest := filepath.Join(t.TempDir(), "dst")
	file := "name: t\nversion: 1\nparams:\n  dest: {type: text, required: true}\ntarget: {kind: store, data_dir: '${dest}'}\n" +
		"mask:\n  NeverAppended: {email: hash}\n"
	rep, err, _ := execute(t, src, file, l, "dest="+dest)
	if err != nil || rep.MaskedEvents != 0 || rep.Written == 0 {
		t.Fatalf("%+v %v", rep, err)
	}
}
