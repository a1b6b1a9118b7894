package auditpg_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
)

// Every append masks the passwords of connection strings in every text of
// the entry, whatever form they took and whichever field they went into:
// the caller forgot nothing it could have forgotten. The stored body, the
// columns kept for queries and the entry returned agree, and the chain
// verifies.
func TestAppendMasksPasswordsInEveryField(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	e := audit.Entry{Kind: "test.mask", Subject: "run postgres:/u:PWsubject@h/db",
		Origin: audit.Origin{Actor: "host=h password=PWactor", Host: "h", Version: "v", Revision: "r",
			Command: "rewind x --to postgresql:/u:PWcommand@h/db"},
		Attrs: map[string]string{
			"target":   "store /srv/postgres:/u:PWcleaned@h:5432/db", // filepath.Clean of postgres://
			"url":      "postgres://u:PWurl@h/db",
			"query":    "postgres:/u@h/db?sslmode=disable&password=PWquery",
			"kv":       "/srv/host=h user=u password=PWkv dbname=d",
			"quoted":   "host=h password='PW quoted' dbname=d",
			"ordinary": "OrderPlaced:card.number mask",
		},
		Message: "open /proc/D/postgres:/u:PWmessage@h/db: no such file"}
	got, err := b.ledger.Append(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	var body, subject, actor string
	if err := b.db.Pool.QueryRow(ctx, "SELECT body, subject, actor FROM rewind.audit_log WHERE seq = $1", got.Seq).
		Scan(&body, &subject, &actor); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"PWsubject", "PWactor", "PWcommand", "PWcleaned", "PWurl", "PWquery", "PWkv", "PW quoted", "PWmessage"} {
		if strings.Contains(body+subject+actor, pw) || strings.Contains(got.Attrs["target"]+got.Message+got.Subject, pw) {
			t.Errorf("%s stored: %s | %s | %s", pw, body, subject, actor)
		}
	}
	if got.Attrs["target"] != "store /srv/postgres:/u:***@h:5432/db" || got.Attrs["ordinary"] != "OrderPlaced:card.number mask" ||
		got.Attrs["kv"] != "/srv/host=h user=u password=*** dbname=d" || subject != got.Subject {
		t.Errorf("masked entry %+v (subject column %q)", got, subject)
	}
	if e.Attrs["url"] != "postgres://u:PWurl@h/db" {
		t.Errorf("the caller's entry was changed: %v", e.Attrs)
	}
	for e, err := range b.ledger.Entries(ctx, auditpg.Filter{}) {
		if err != nil || e.Hash != got.Hash {
			t.Fatalf("read back %+v: %v", e, err)
		}
	}
	if _, err := b.ledger.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
