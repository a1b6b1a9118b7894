package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/internal/pgtest"
)

const plantedSecret = "PLANTED-4111-SECRET"

// templateSetup returns a source store holding events with the planted
// secret, a ledger database, and a function writing a template file.
func templateSetup(t *testing.T) (src string, db *pgtest.DB, write func(name, body string) string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	env := cleanEnv()
	for _, e := range []struct{ stream, typ, data, ct string }{
		{"users-1", "UserRegistered", `{"email":"` + plantedSecret + `","name":"Ann","card":{"number":"` + plantedSecret + `"}}`, ""},
		{"users-2", "UserRegistered", `{"email":"a@b","tags":[{"ssn":"` + plantedSecret + `"}]}`, ""},
		{"orders-1", "OrderPlaced", `{"total":12,"notes":"` + plantedSecret + `"}`, ""},
		{"orders-1", "OrderPaid", `{"amount":12}`, ""},
		{"blobs-1", "Blob", "raw bytes, not JSON", "text/plain"},
	} {
		args := []string{"--data-dir", src, "append", e.stream, "--type", e.typ, "--data", e.data}
		if e.ct != "" {
			args = append(args, "--content-type", e.ct)
		}
		if code, _, errOut := exe(t, env, "", args...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	dir := t.TempDir()
	return src, pgtest.New(t), func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

const stagingTemplate = `name: staging-copy
version: 2
params:
  dest: {type: text, required: true}
  api_token: {type: text, default: none}
  expect: {type: integer}
target:
  kind: store
  data_dir: ${dest}
filter:
  types: [UserRegistered, OrderPlaced, OrderPaid, Blob, "x-${api_token}"]
checks:
  events: ${expect}
mask:
  UserRegistered:
    email: hash
    card.number: mask
    tags[].ssn: drop
  OrderPlaced:
    notes: mask
`

func ledgerRows(t *testing.T, db *pgtest.DB) (n int, bodies string) {
	t.Helper()
	var exists bool
	if err := db.Pool.QueryRow(context.Background(), "SELECT to_regclass('rewind.audit_log') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		return 0, ""
	}
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*), coalesce(string_agg(body, E'\\n' ORDER BY seq), '') FROM rewind.audit_log").
		Scan(&n, &bodies); err != nil {
		t.Fatal(err)
	}
	return n, bodies
}

func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(s)) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	return hits
}

func TestReplayTemplateRunMasksAndRecords(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	tpl := write("staging.yaml", stagingTemplate)
	dest := filepath.Join(t.TempDir(), "staging")
	keyFile := write("key", "0123456789abcdef-key\n")
	env := cleanEnv()
	if len(grepTree(t, src, plantedSecret)) == 0 {
		t.Fatal("the source does not hold the secret: the grep proves nothing")
	}

	// Plan (the default, and run without --execute): nothing written, nothing recorded.
	code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "plan", tpl, "-p", "dest="+dest, "--mask-key-file", keyFile)
	if code != 0 || !strings.Contains(out, "window: 1..5, 5 events") || !strings.Contains(out, "masking: 3 events, 5 values") ||
		!strings.Contains(out, "target: store "+dest) {
		t.Fatalf("plan: %d %q %q", code, out, errOut)
	}
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "dest="+dest, "--mask-key-file", keyFile,
		"--ledger-dsn", db.DSN)
	if code != 0 || !strings.Contains(out, "add --execute") {
		t.Fatalf("run without --execute: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a plan created the target: %v", err)
	}
	if n, _ := ledgerRows(t, db); n != 0 {
		t.Fatalf("a plan was recorded: %d entries", n)
	}

	// --execute: masked into the target, recorded in the ledger.
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "dest="+dest, "-p", "api_token=tok-"+plantedSecret,
		"--mask-key-file", keyFile, "--execute", "--ledger-dsn", db.DSN, "--actor", "ana", "--json")
	var rep struct {
		RunID   string `json:"run_id"`
		Written int64
		Masking bool
		Window  struct{ Events int64 }
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Written != 5 || !rep.Masking || rep.RunID == "" {
		t.Fatalf("run: %d %q %q", code, out, errOut)
	}
	if hits := grepTree(t, dest, plantedSecret); len(hits) > 0 {
		t.Fatalf("the planted secret reached the target: %v", hits)
	}
	code, out, _ = exe(t, env, "", "--data-dir", dest, "read", "users-1", "--json")
	if code != 0 || !strings.Contains(out, `"card":{"number":"***"}`) || !strings.Contains(out, `"name":"Ann"`) {
		t.Fatalf("the target's users-1: %d %s", code, out)
	}
	n, bodies := ledgerRows(t, db)
	if n != 2 || !strings.Contains(bodies, `"replay.run.started"`) || !strings.Contains(bodies, `"replay.run.finished"`) ||
		!strings.Contains(bodies, `"masked":"true"`) || !strings.Contains(bodies, `"actor":"ana"`) ||
		!strings.Contains(bodies, `"param.api_token":"***"`) || !strings.Contains(bodies, `"template_hash":"`) ||
		!strings.Contains(bodies, rep.RunID) {
		t.Fatalf("ledger: %d %s", n, bodies)
	}
	if strings.Contains(bodies, plantedSecret) || strings.Contains(bodies, "0123456789abcdef-key") {
		t.Fatalf("the ledger holds a secret: %s", bodies)
	}
	if code, out, errOut := exe(t, env, "", "audit", "verify", "--dsn", db.DSN); code != 0 {
		t.Fatalf("audit verify: %d %s %s", code, out, errOut)
	}
	if code, out, _ := exe(t, env, "", "audit", "log", "--dsn", db.DSN); code != 0 || !strings.Contains(out, "replay.run.finished") {
		t.Fatalf("audit log: %d %s", code, out)
	}

	// A check that fails: exit 5, nothing written, recorded as failed.
	dest2 := filepath.Join(t.TempDir(), "staging2")
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "dest="+dest2, "-p", "expect=4",
		"--mask-key-file", keyFile, "--execute", "--ledger-dsn", db.DSN)
	if code != 5 || !strings.Contains(out, "check events: want 4, got 5: FAILED") || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("failed check: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(dest2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed check created the target: %v", err)
	}
	if n, bodies := ledgerRows(t, db); n != 4 || !strings.Contains(bodies, `"replay.run.failed"`) {
		t.Fatalf("ledger after a failed check: %d", n)
	}
	// The plan of it exits 5 too.
	if code, _, _ := exe(t, env, "", "--data-dir", src, "replay", "plan", tpl, "-p", "dest="+dest2, "-p", "expect=4",
		"--mask-key-file", keyFile); code != 5 {
		t.Fatalf("plan with a failing check: %d", code)
	}
	// An event the masking cannot handle: exit 2, nothing written.
	if code, _, errOut := exe(t, env, "", "--data-dir", src, "append", "users-3", "--type", "UserRegistered", "--data",
		"email="+plantedSecret, "--content-type", "text/plain"); code != 0 {
		t.Fatalf("append: %s", errOut)
	}
	code, _, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "dest="+dest2, "--mask-key-file", keyFile,
		"--execute", "--ledger-dsn", db.DSN)
	if code != 2 || !strings.Contains(errOut, `stream "users-3"`) || strings.Contains(errOut, plantedSecret) {
		t.Fatalf("unmaskable: %d %q", code, errOut)
	}
	if _, err := os.Stat(dest2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unmaskable event created the target: %v", err)
	}
	// The key from the environment works as the file's.
	code, _, errOut = exe(t, cleanEnv("REWIND_MASK_KEY=0123456789abcdef-key"), "", "--data-dir", src, "replay", "plan", tpl,
		"-p", "dest="+dest2, "--json")
	if code != 2 || !strings.Contains(errOut, "users-3") {
		t.Fatalf("plan with the key from the environment: %d %q", code, errOut)
	}
}

func TestReplayTemplateVerifyRun(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	verify := write("verify.yaml", "name: v\nversion: 1\ntarget: {kind: verify}\nwindow: {from: 2, to: 4}\nmask:\n  OrderPlaced: {notes: hash}\n")
	code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "plan", verify, "--json")
	var rep struct {
		Window struct {
			Events int64
			Digest string
		}
		Masking bool
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Window.Events != 3 || rep.Masking {
		t.Fatalf("plan: %d %q %q (a verify target writes nothing: no masking, no key)", code, out, errOut)
	}
	// The digest as a check, run and recorded.
	withDigest := write("verify2.yaml", "name: v\nversion: 2\ntarget: {kind: verify}\nwindow: {from: 2, to: 4}\nchecks: {digest: "+
		rep.Window.Digest+", events: 3}\n")
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", withDigest, "--execute", "--ledger-dsn", db.DSN)
	if code != 0 || !strings.Contains(out, "check digest") || !strings.Contains(out, "written: 0 events") {
		t.Fatalf("verify run: %d %q %q", code, out, errOut)
	}
	if n, bodies := ledgerRows(t, db); n != 2 || !strings.Contains(bodies, `"masked":"false"`) || !strings.Contains(bodies, `"target":"verify"`) {
		t.Fatalf("ledger: %d %s", n, bodies)
	}
	// --execute without a ledger: refused, nothing recorded.
	if code, _, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", withDigest, "--execute"); code != 2 ||
		!strings.Contains(errOut, "--ledger-dsn") {
		t.Fatalf("no ledger: %d %q", code, errOut)
	}
}

// TestReplayTemplateHostile runs bad templates, parameters and targets
// through the binary: each exits 2 naming the key and its line (or the
// flag), and nothing is written: no target, no ledger entry.
func TestReplayTemplateHostile(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	dest := filepath.Join(t.TempDir(), "never")
	key := write("key", "0123456789abcdef-key")
	head := "name: h\nversion: 1\n"
	store := "target:\n  kind: store\n  data_dir: " + dest + "\n"
	cases := []struct {
		name, body string
		params     []string
		want       string // in stderr
	}{
		{"unknown key", head + store + "widow: {from: 1}\n", nil, "line 6: widow: is not a known key"},
		{"wrong type", head + store + "checks: {events: many}\n", nil, `line 6: checks.events "many": must be a whole number`},
		{"duplicate key", head + store + "target: {kind: verify}\n", nil, "line 6: target: is given twice (first at line 3)"},
		{"missing required param", "params:\n  since: {type: time, required: true}\n" + head + store + "window: {from: '${since}'}\n", nil,
			"line 2: params.since: is required: give --param since=VALUE"},
		{"param of wrong type", "params:\n  since: {type: time}\n" + head + store + "window: {from: '${since}'}\n", []string{"since=yesterday"},
			`--param since "yesterday": is not an RFC 3339 time`},
		{"undeclared param", head + store, []string{"x=1"}, "--param x: the template declares no such parameter"},
		{"from after to", head + store + "window:\n  from: 9\n  to: 3\n", nil, `line 7: window.from "9": is after window.to 3`},
		{"unknown target", head + "target: {kind: s3}\n", nil, `line 3: target.kind "s3": is not a target kind`},
		{"target is the source", head + "target: {kind: store, data_dir: " + src + "}\n", nil, "line 3: target.data_dir"},
		{"target inside the source", head + "target: {kind: store, data_dir: " + src + "/copy}\n", nil, "is the source store"},
		{"target holds the source", head + "target: {kind: store, data_dir: " + filepath.Dir(src) + "}\n", nil, "is the source store"},
		{"bad mask path", head + store + "mask:\n  T: {'a..b': mask}\n", nil, "line 7: mask.T.a..b"},
		{"bad mask action", head + store + "mask:\n  T: {a: blur}\n", nil, "line 7: mask.T.a"},
		{"empty file", "", nil, "is empty"},
		{"not yaml", "name: [\n", nil, "not valid YAML"},
	}
	for _, tc := range cases {
		tpl := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body)
		for _, sub := range [][]string{{"plan"}, {"run", "--execute", "--ledger-dsn", db.DSN}} {
			args := append([]string{"--data-dir", src, "replay"}, sub...)
			args = append(args, tpl, "--mask-key-file", key)
			for _, p := range tc.params {
				args = append(args, "-p", p)
			}
			code, _, errOut := exe(t, cleanEnv(), "", args...)
			if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, tpl) && !strings.Contains(tc.want, "--param") {
				t.Errorf("%s (%s): exit %d, %q; want 2 and %q", tc.name, sub[0], code, errOut, tc.want)
			}
		}
	}
	// A hashing template without a key.
	tpl := write("nokey.yaml", head+store+"mask:\n  T: {a: hash}\n")
	if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", src, "replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN); code != 2 ||
		!strings.Contains(errOut, "mask key") {
		t.Errorf("no key: %d %q", code, errOut)
	}
	// A template that does not exist: exit 3.
	if code, _, _ := exe(t, cleanEnv(), "", "--data-dir", src, "replay", "plan", filepath.Join(t.TempDir(), "nope.yaml")); code != 3 {
		t.Errorf("missing template: %d", code)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused template created the target: %v", err)
	}
	if n, _ := ledgerRows(t, db); n != 0 {
		t.Fatalf("refused templates were recorded: %d entries", n)
	}
	entries, _ := os.ReadDir(filepath.Dir(src))
	if len(entries) != 1 {
		t.Fatalf("something was written beside the source: %v", entries)
	}
}

// TestReplayTemplateGroupTarget: a group target plans by default (no group,
// nothing recorded), and with --execute creates a bounded group of the
// source store over the window the plan resolved, with the template's
// filter, recorded in the ledger; the group delivers exactly that window
// and is complete. Bad group targets exit 2 and create nothing; a run into
// an existing group or over an empty window fails, recorded, and changes
// no group.
func TestReplayTemplateGroupTarget(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	tpl := write("group.yaml", `name: redeliver
version: 1
params:
  from: {type: bound, required: true}
  name: {type: text, default: fix-1}
window: {from: "${from}", to: 4}
filter: {prefix: users-}
target: {kind: group, group: "${name}", order_by: stream}
production: true
mask:
  UserRegistered: {email: hash}
`)
	groups := func() string {
		_, out, _ := exe(t, env, "", "--data-dir", src, "groups", "ls", "--json")
		return out
	}
	code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "plan", tpl, "-p", "from=2")
	if code != 0 || !strings.Contains(out, "target: group fix-1") || !strings.Contains(out, "window: 2..4, 1 events") {
		t.Fatalf("plan: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "from=2", "--ledger-dsn", db.DSN); code != 0 {
		t.Fatalf("run without --execute: %d %q", code, errOut)
	}
	if g := groups(); strings.Contains(g, `"name"`) {
		t.Fatalf("a plan created a group: %s", g)
	}
	if n, _ := ledgerRows(t, db); n != 0 {
		t.Fatalf("a plan recorded %d ledger entries", n)
	}
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "from=1", "--execute", "--ledger-dsn", db.DSN, "--json")
	var rep struct {
		Group struct {
			Config struct {
				Name  string
				Start struct{ Position uint64 }
				End   struct{ Position uint64 }
			}
			Bounded bool
			End     uint64
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Group.Config.Name != "fix-1" || !rep.Group.Bounded ||
		rep.Group.End != 4 || rep.Group.Config.Start.Position != 0 {
		t.Fatalf("run --execute: %d %q %q", code, out, errOut)
	}
	if n, bodies := ledgerRows(t, db); n != 2 || !strings.Contains(bodies, `"target":"group fix-1"`) ||
		!strings.Contains(bodies, "replay.run.finished") {
		t.Fatalf("ledger: %d %s", n, bodies)
	}
	// Appended after the run: outside the window.
	if code, _, errOut := exe(t, env, "", "--data-dir", src, "append", "users-3", "--type", "UserRegistered", "--data", "{}"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	code, out, errOut = exe(t, env, "", "--data-dir", src, "consume", "fix-1", "--json")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"stream":"users-1"`) ||
		!strings.Contains(out, `"stream":"users-2"`) {
		t.Fatalf("consume: %d %q %q, want the two users- events of 1..4", code, out, errOut)
	}
	if g := groups(); !strings.Contains(g, `"status":"complete"`) {
		t.Fatalf("the group is not complete: %s", g)
	}

	// An existing group: the run fails, recorded; the group is unchanged.
	code, _, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "from=1", "--execute", "--ledger-dsn", db.DSN)
	if code != 4 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("an existing group: %d %q", code, errOut)
	}
	if n, bodies := ledgerRows(t, db); n != 4 || !strings.Contains(bodies, "replay.run.failed") {
		t.Fatalf("ledger after a failed run: %d", n)
	}
	// An empty window: exit 5, no group.
	code, _, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "from=2099-01-01T00:00:00Z", "-p", "name=empty",
		"--execute", "--ledger-dsn", db.DSN)
	if code != 5 || !strings.Contains(errOut, "no group was created") || strings.Contains(groups(), `"empty"`) {
		t.Fatalf("an empty window: %d %q", code, errOut)
	}
	// A window of positions whose events the prefix leaves out (3..4 are
	// orders-1's): exit 5 too, recorded as failed, no group.
	code, _, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "-p", "from=3", "-p", "name=filtered",
		"--execute", "--ledger-dsn", db.DSN)
	if code != 5 || !strings.Contains(errOut, "no group was created") || strings.Contains(groups(), `"filtered"`) {
		t.Fatalf("a window its filter empties: %d %q", code, errOut)
	}
	if n, bodies := ledgerRows(t, db); n != 8 || strings.Count(bodies, "replay.run.failed") != 3 {
		t.Fatalf("ledger after empty windows: %d entries, want 8 with 3 failed runs", n)
	}

	head := "name: g\nversion: 1\n"
	for _, c := range []struct{ name, body, want string }{
		{"masked", head + "target: {kind: group, group: g}\nmask:\n  UserRegistered: {email: hash}\n", "masking cannot apply"},
		{"paced", head + "target: {kind: group, group: g}\npacing: {rate: 10}\n", "paced by its members"},
		{"streams", head + "target: {kind: group, group: g}\nfilter: {streams: [users-1]}\n", "filter.prefix"},
		{"no name", head + "target: {kind: group}\n", "is required for a group target"},
		{"bad name", head + "target: {kind: group, group: 'a b'}\n", "target.group"},
		{"bad order", head + "target: {kind: group, group: g, order_by: key}\n", "target.order_by"},
		{"data_dir", head + "target: {kind: group, group: g, data_dir: /tmp/x}\n", "remove data_dir"},
		{"group on a store", head + "target: {kind: store, data_dir: /tmp/x, group: g}\n", "kind: group"},
	} {
		p := write(c.name+".yaml", c.body)
		code, _, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", p, "--execute", "--ledger-dsn", db.DSN)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d %q, want 2 saying %q", c.name, code, errOut, c.want)
		}
	}
	if n, _ := ledgerRows(t, db); n != 8 {
		t.Fatalf("bad group targets recorded ledger entries: %d, want the 8 of before", n)
	}
	if g := groups(); strings.Count(g, `"name"`) != 1 {
		t.Fatalf("bad group targets created groups: %s", g)
	}
}

// TestReplayTemplateGroupTargetThroughServer: with --server the group of a
// group target is created in the server's engine, and a consumer through
// the server gets the window and ends when the group is complete.
func TestReplayTemplateGroupTargetThroughServer(t *testing.T) {
	t.Parallel()
	url, token := startServer(t)
	srv := []string{"--server", url, "--token", token}
	var lines strings.Builder
	for i := range 6 {
		lines.WriteString(`{"type":"Placed","data":{"i":` + string(rune('0'+i)) + `}}` + "\n")
	}
	if code, _, errOut := run(t, "", lines.String(), append([]string{"append", "orders-1"}, srv...)...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	db := pgtest.New(t)
	tpl := filepath.Join(t.TempDir(), "g.yaml")
	if err := os.WriteFile(tpl, []byte("name: g\nversion: 1\nwindow: {from: 2, to: 4}\nfilter: {prefix: orders-}\n"+
		"target: {kind: group, group: remote-fix}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "", "", append([]string{"replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN}, srv...)...)
	if code != 0 || !strings.Contains(out, "created group remote-fix: events 2..4") {
		t.Fatalf("run: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, "", "", append([]string{"consume", "remote-fix", "--json"}, srv...)...)
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"position":2,`) || !strings.Contains(out, `"position":4,`) {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	if n, bodies := ledgerRows(t, db); n != 2 || !strings.Contains(bodies, `"target":"group remote-fix"`) {
		t.Fatalf("ledger: %d %s", n, bodies)
	}
}

// TestReplayTemplateSecretsNeverLeak: a secret parameter's value that goes
// into a group name, a filter or a store's data_dir is shown and recorded
// as ***: in the JSON and text reports, in error messages (also the
// engine's and the operating system's, which repeat the name or path), and
// in the ledger's entries.
func TestReplayTemplateSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	const hush = "SECRET8hush"
	noLeak := func(what string, texts ...string) {
		t.Helper()
		for _, s := range texts {
			if strings.Contains(s, hush) {
				t.Fatalf("%s shows the secret: %q", what, s)
			}
		}
		if _, bodies := ledgerRows(t, db); strings.Contains(bodies, hush) {
			t.Fatalf("%s: the ledger holds the secret: %s", what, bodies)
		}
	}
	group := write("group.yaml", `name: g
version: 1
params:
  hush: {type: text, secret: true}
filter: {prefix: "users-", types: ["UserRegistered"]}
target: {kind: group, group: "HUSH.${hush}"}
production: true
`)
	run := func(tpl string, extra ...string) (int, string, string) {
		return exe(t, env, "", append([]string{"--data-dir", src, "replay", "run", tpl, "-p", "hush=" + hush,
			"--execute", "--ledger-dsn", db.DSN}, extra...)...)
	}
	code, out, errOut := run(group, "--json")
	if code != 0 || !strings.Contains(out, `"name":"***"`) {
		t.Fatalf("group run --json: %d %q %q", code, out, errOut)
	}
	noLeak("group run --json", out, errOut)
	code, out, errOut = run(group) // the group exists: the engine's error names it
	if code != 4 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("group run again: %d %q %q", code, out, errOut)
	}
	noLeak("group run again", out, errOut)
	if n, bodies := ledgerRows(t, db); n != 4 || !strings.Contains(bodies, "create group ***") {
		t.Fatalf("ledger: %d %s", n, bodies)
	}

	other := write("group2.yaml", strings.Replace(readFile(t, group), "HUSH.", "TOP.", 1))
	code, out, errOut = exe(t, env, "", "--data-dir", src, "replay", "run", other, "-p", "hush="+hush, "--execute", "--ledger-dsn", db.DSN)
	if code != 0 || !strings.Contains(out, "created group ***") {
		t.Fatalf("group run (text): %d %q %q", code, out, errOut)
	}
	noLeak("group run (text)", out, errOut)

	store := write("store.yaml", `name: s
version: 1
params:
  hush: {type: text, secret: true}
target: {kind: store, data_dir: "/proc/D${hush}"}
production: true
`)
	code, out, errOut = run(store)
	if code == 0 || !strings.Contains(errOut, "open the target") {
		t.Fatalf("store run into /proc: %d %q %q", code, out, errOut)
	}
	noLeak("store run into /proc", out, errOut)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReplayTemplateBadFilterFoundUpFront: a filter the store or the
// engine would refuse (a stream, a prefix or a type), written out or from
// a parameter, a metadata:KEY mask rule that names no key or a key twice,
// and a group name groups create refuses, are template errors (exit 2,
// the key and its line): nothing is read, recorded (in a ledger that
// exists) or created.
func TestReplayTemplateBadFilterFoundUpFront(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	// A run recorded first: the ledger exists, so that an entry a
	// refused run appended would be counted.
	ok := write("ok.yaml", "name: ok\nversion: 1\ntarget: {kind: verify}\n")
	if code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", ok, "--execute", "--ledger-dsn", db.DSN); code != 0 {
		t.Fatalf("verify run: %d %q %q", code, out, errOut)
	}
	before, _ := ledgerRows(t, db)
	head := "name: f\nversion: 1\nproduction: true\n"
	withP := "name: f\nversion: 1\nparams:\n  p: {type: text, secret: true}\nproduction: true\n"
	for _, c := range []struct{ name, body, param, key string }{
		{"type with a space", head + "target: {kind: verify}\nfilter: {types: [\"a b\"]}\n", "", "filter.types[0]"},
		{"type with $", head + "target: {kind: verify}\nfilter: {types: [\"$x\"]}\n", "", "filter.types[0]"},
		{"type from a parameter", withP + "target: {kind: verify}\nfilter: {types: [\"${p}\"]}\n", "a SECRET10", "filter.types[0]"},
		{"prefix with a space", head + "target: {kind: verify}\nfilter: {prefix: \"a b\"}\n", "", "filter.prefix"},
		{"prefix from a parameter", withP + "target: {kind: group, group: g1}\nfilter: {prefix: \"PFX ${p}\"}\n", "SECRET10", "filter.prefix"},
		{"reserved prefix", head + "target: {kind: group, group: g2}\nfilter: {prefix: _rewind.}\n", "", "filter.prefix"},
		{"group like a flag", head + "target: {kind: group, group: -x}\n", "", "target.group"},
		{"reserved group", withP + "target: {kind: group, group: \"${p}\"}\n", "_rewind.x", "target.group"},
		{"stream with a space", head + "target: {kind: verify}\nfilter: {streams: [\"users-1\", \"a b\"]}\n", "", "filter.streams[1]"},
		{"stream from a parameter", withP + "target: {kind: verify}\nfilter: {streams: [\"${p}\"]}\n", "$SECRET10", "filter.streams[0]"},
		{"streams and prefix", head + "target: {kind: verify}\nfilter: {prefix: users-, streams: [users-1]}\n", "", "filter.prefix"},
		{"metadata rule without a key", "name: f\nversion: 1\ntarget: {kind: store, data_dir: /tmp/never-f1}\nmask: {T: {\"metadata:\": mask}}\n", "", "mask.T.metadata:"},
		{"mask type with a space", "name: f\nversion: 1\ntarget: {kind: store, data_dir: /tmp/never-f3}\nmask: {\"bad type\": {card: drop}}\n", "", "mask.bad type"},
		{"mask type with $", "name: f\nversion: 1\ntarget: {kind: store, data_dir: /tmp/never-f4}\nmask: {UserRegistered: {email: mask}, \"$x\": {card: drop}}\n", "", "mask.$x"},
		{"metadata rule twice", "name: f\nversion: 1\ntarget: {kind: store, data_dir: /tmp/never-f2}\nmask: {T: {\"metadata:k\": mask}, \"*\": {\"metadata:k\": hash}}\n", "", "metadata:k"},
	} {
		tpl := write(strings.ReplaceAll(c.name, " ", "-")+".yaml", c.body)
		for _, sub := range [][]string{{"plan"}, {"run", "--execute", "--ledger-dsn", db.DSN}} {
			args := append([]string{"--data-dir", src, "replay"}, sub[0], tpl)
			if c.param != "" {
				args = append(args, "-p", "p="+c.param)
			}
			code, out, errOut := exe(t, env, "", append(args, sub[1:]...)...)
			if code != 2 || !strings.Contains(errOut, c.key) || !strings.Contains(errOut, ":") || strings.Contains(out+errOut, "SECRET10") {
				t.Errorf("%s, %s: exit %d %q %q, want 2 naming %s without the secret", c.name, sub[0], code, out, errOut, c.key)
			}
		}
	}
	if n, bodies := ledgerRows(t, db); before != 2 || n != before {
		t.Fatalf("bad filters recorded %d ledger entries after the %d of a good run: %s", n-before, before, bodies)
	}
	for _, d := range []string{"/tmp/never-f1", "/tmp/never-f2", "/tmp/never-f3", "/tmp/never-f4"} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused run created its target %s: %v", d, err)
		}
	}
	if _, out, _ := exe(t, env, "", "--data-dir", src, "groups", "ls", "--json"); strings.Contains(out, `"name"`) {
		t.Fatalf("bad filters created groups: %s", out)
	}
}
