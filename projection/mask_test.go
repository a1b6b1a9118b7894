package projection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/replay/mask"
)

const planted = "PLANTED-SECRET-4111"

// customers is a projection that stores each event's whole data and its
// metadata "ip" as text (so a secret that reaches a handler reaches a
// table) and declares the email and the ip hashed, the card dropped and
// the notes masked.
func customers(t *testing.T, version int) projection.Projection {
	t.Helper()
	rules := mask.Rules{}
	for _, r := range []struct {
		path string
		act  mask.Action
	}{{"email", mask.Hash}, {"card", mask.Drop}, {"notes[].text", mask.Mask}, {"metadata:ip", mask.Hash}} {
		if err := rules.Add("Registered", r.path, r.act); err != nil {
			t.Fatal(err)
		}
	}
	return projection.Projection{
		Name: "customers", Version: version, Sensitive: rules,
		Setup: func(schema string) string {
			return fmt.Sprintf(`CREATE TABLE %s.customers (id text PRIMARY KEY, data text NOT NULL)`, schema)
		},
		Handlers: map[string]projection.Handler{
			"Registered": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
				tx.Queue("INSERT INTO "+tx.Table("customers")+" (id, data) VALUES ($1, $2)", ev.Stream,
					string(ev.Data)+" ip="+ev.Metadata["ip"])
				return nil
			},
		},
	}
}

func (b *bundle) appendCustomers(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		data := fmt.Sprintf(`{"email":"%[1]s-%[2]d@x","card":{"number":"%[1]s"},"notes":[{"text":"%[1]s"}],"name":"c%[2]d"}`, planted, i)
		if _, err := b.store.Append(ctx, fmt.Sprintf("customer-%d", i), rewind.Any,
			rewind.Event{Type: "Registered", Data: []byte(data), Metadata: map[string]string{"ip": planted}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBuildAsOfMasksSensitiveFields: an as-of build of a projection that
// declares sensitive fields holds none of the planted secret — hashed,
// dropped or masked before any handler saw the event — says so in its
// result and in its schema's comment, and hashes stably (the same email,
// the same hash, under the same key). Config.Unmasked builds with the data
// as it is (so the check can see the secret), and is marked unmasked.
func TestBuildAsOfMasksSensitiveFields(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendCustomers(t, 5)
	cfg := b.config()
	cfg.MaskKey = []byte("0123456789abcdef-key")
	res, err := projection.BuildAsOf(ctx, cfg, customers(t, 1), 0, "cust_masked")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Masked || res.MaskedEvents != 5 || res.MaskedValues != 20 || res.MaskKeyID == "" {
		t.Fatalf("as-of result %+v, want masked: 5 events, 15 values, a key id", res)
	}
	if n := b.count(t, `SELECT count(*) FROM cust_masked.customers`); n != 5 {
		t.Fatalf("%d customers, want 5", n)
	}
	if n := b.count(t, `SELECT count(*) FROM cust_masked.customers WHERE data LIKE '%'||$1||'%' OR data LIKE '%"card"%'`, planted); n != 0 {
		t.Fatalf("%d rows of the masked build hold the secret or the card", n)
	}
	var comment string
	if err := b.db.Pool.QueryRow(ctx, `SELECT obj_description('cust_masked'::regnamespace, 'pg_namespace')`).Scan(&comment); err != nil ||
		!strings.Contains(comment, "masked (5 events, 20 values, hash key id "+res.MaskKeyID+")") {
		t.Fatalf("schema comment %q (%v)", comment, err)
	}
	// The same key hashes the same email alike in a second build.
	if _, err := projection.BuildAsOf(ctx, cfg, customers(t, 1), 0, "cust_masked2"); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM cust_masked.customers a JOIN cust_masked2.customers b USING (id, data)`); n != 5 {
		t.Fatalf("%d of 5 rows equal across two masked builds under one key", n)
	}

	cfg.Unmasked = true
	res, err = projection.BuildAsOf(ctx, cfg, customers(t, 1), 0, "cust_plain")
	if err != nil || res.Masked {
		t.Fatalf("unmasked build: %+v, %v", res, err)
	}
	if n := b.count(t, `SELECT count(*) FROM cust_plain.customers WHERE data LIKE '%'||$1||'%'`, planted); n != 5 {
		t.Fatalf("the unmasked build shows the secret in %d rows, want 5 (else the masked check proves nothing)", n)
	}
	if err := b.db.Pool.QueryRow(ctx, `SELECT obj_description('cust_plain'::regnamespace, 'pg_namespace')`).Scan(&comment); err != nil ||
		!strings.HasSuffix(comment, "unmasked") {
		t.Fatalf("schema comment of the unmasked build %q (%v)", comment, err)
	}
}

// TestMaskedBuildsFailClosed: a hash rule without a key is refused before
// anything is built, and an event whose data cannot be masked fails the
// build and leaves no schema (its data reached no table).
func TestMaskedBuildsFailClosed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendCustomers(t, 2)
	if _, err := projection.BuildAsOf(ctx, b.config(), customers(t, 1), 0, "no_key"); !errors.Is(err, projection.ErrBadDefinition) ||
		!strings.Contains(err.Error(), "MaskKey") {
		t.Fatalf("a hash rule without a key: %v", err)
	}
	if _, err := b.store.Append(ctx, "customer-x", rewind.Any, rewind.Event{Type: "Registered", Data: []byte(`"` + planted + `"`)}); err != nil {
		t.Fatal(err)
	}
	cfg := b.config()
	cfg.MaskKey = []byte("0123456789abcdef-key")
	_, err := projection.BuildAsOf(ctx, cfg, customers(t, 1), 0, "unmaskable")
	var ue *mask.UnmaskableError
	if !errors.As(err, &ue) || ue.Stream != "customer-x" {
		t.Fatalf("an unmaskable event: %v", err)
	}
	for _, s := range []string{"no_key", "unmaskable"} {
		if n := b.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, s); n != 0 {
			t.Errorf("the refused build left schema %s", s)
		}
	}
}

// TestDiffMasks: Diff builds masked sides and reports masked rows only;
// a change of the data outside the sensitive fields is still found.
func TestDiffMasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendCustomers(t, 3)
	cfg := b.config()
	cfg.MaskKey = []byte("0123456789abcdef-key")
	a, c := customers(t, 1), customers(t, 2)
	c.Handlers = map[string]projection.Handler{"Registered": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
		tx.Queue("INSERT INTO "+tx.Table("customers")+" (id, data) VALUES ($1, $2)", ev.Stream, string(ev.Data)+" v2")
		return nil
	}}
	res, err := projection.Diff(ctx, cfg, a, c, projection.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Masked || len(res.Keys) != 3 || res.Keys[0].FirstType != "Registered" {
		t.Fatalf("diff: masked %v, %d keys (%+v)", res.Masked, len(res.Keys), res.Keys)
	}
	for _, k := range res.Keys {
		if strings.Contains(string(k.A)+string(k.B), planted) {
			t.Fatalf("a diff of masked builds reports the secret: %s / %s", k.A, k.B)
		}
	}
}
