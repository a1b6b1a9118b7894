package template

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/audit"
)

// A DSN's password inside a parameter's value, and a parameter named like
// a secret, reach neither the ledger's attributes nor the plan's params
// (an outside test found both recorded in clear, for ever).
func TestDSNPasswordsAndSecretNamesAreNotRecorded(t *testing.T) {
	t.Parallel()
	// (A data directory, not a filter: a filter with spaces is refused.)
	file := "name: t\nversion: 1\nproduction: true\nparams:\n  dsn: {type: text}\n  kv: {type: text}\n  private_key: {type: text}\n" +
		"target: {kind: store, data_dir: '/d/${kv}'}\nfilter: {types: ['${dsn}', '${private_key}']}\n"
	tp, err := Parse("s.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve([]string{"dsn=postgres://u:DSNPWVAL@h/db", "kv=host=h password=KVPWVAL", "private_key=PRIVKEYVAL"})
	if err != nil {
		t.Fatal(err)
	}
	attrs, _ := json.Marshal(tp.attrs(sp, RunOptions{}))
	params, _ := json.Marshal(sp.Params)
	for _, secret := range []string{"DSNPWVAL", "KVPWVAL", "PRIVKEYVAL"} {
		if strings.Contains(string(attrs), secret) || strings.Contains(string(params), secret) {
			t.Errorf("%s recorded:\n%s\n%s", secret, attrs, params)
		}
	}
	if sp.Params["private_key"] != "***" {
		t.Errorf("private_key shown as %q", sp.Params["private_key"])
	}
}

// The ledger masks what follows "password=" in every attribute
// (audit.MaskEntry): the mask_rules attribute writes TYPE:PATH ACTION, so
// that a rule of a field named password still says what happens to it,
// and the rules after it are not swallowed.
func TestMaskRulesOfAPasswordFieldSurviveTheLedgersMasking(t *testing.T) {
	t.Parallel()
	file := "name: t\nversion: 1\ntarget: {kind: store, data_dir: /d}\n" +
		"mask:\n  User:\n    password: drop\n    metadata:password: hash\n    zip: mask\n"
	tp, err := Parse("s.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := audit.MaskEntry(audit.Entry{Attrs: tp.attrs(sp, RunOptions{})})
	if got, want := e.Attrs["mask_rules"], "User:metadata:password hash, User:password drop, User:zip mask"; got != want {
		t.Fatalf("mask_rules recorded as %q, want %q", got, want)
	}
}
