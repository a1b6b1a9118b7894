package template_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/replay/template"
)

// TestPlanReportMasksDSNPasswordsInEveryField: a DSN written into the
// template's name, version or a check's type reached the report (and so
// stdout) in clear.
func TestPlanReportMasksDSNPasswordsInEveryField(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	tp, err := template.Parse("t.yaml", []byte("name: \"postgres://admin:Hunter2pw@db/prod\"\nversion: \"password=Hunter2pw\"\n"+
		"target: {kind: verify}\nchecks: {types: {\"postgres://u:Hunter2pw@h/d\": 0}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := tp.Plan(ctx, src, sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	if strings.Contains(string(b), "Hunter2pw") || rep.Template != "postgres://admin:***@db/prod" || rep.Version != "password=***" {
		t.Fatalf("the plan's report holds the password: %s", b)
	}
	if b, _ := json.Marshal((&template.Report{Template: "password=Hunter2pw", Params: map[string]string{"x": "postgres://a:Hunter2pw@h"}}).Shown()); strings.Contains(string(b), "Hunter2pw") {
		t.Fatalf("Shown keeps the password: %s", b)
	}
}
