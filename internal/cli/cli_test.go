package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// run executes the CLI in-process with stdin and returns its exit status,
// stdout and stderr. It works on the data directory dir, unless args name
// a --server.
func run(t *testing.T, dir, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(strings.NewReader(stdin), &out, &errOut)
	if !slices.Contains(args, "--server") {
		args = append([]string{"--data-dir", dir}, args...)
	}
	code := a.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

func TestAppendReadRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out, errOut := run(t, dir, "", "append", "orders-1", "--type", "Placed", "--data", `{"total":12}`,
		"--expected-version", "no-stream", "--metadata", "actor=ana", "--json")
	if code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	var res struct {
		LastVersion  uint64 `json:"last_version"`
		LastPosition uint64 `json:"last_position"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.LastVersion != 1 || res.LastPosition != 1 {
		t.Fatalf("append output %q: %v", out, err)
	}
	lines := `{"type":"Paid","data":{"x":1},"id":"0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f"}` + "\n\n" + `{"type":"Shipped","data_base64":"AAEC","content_type":"application/octet-stream"}` + "\n"
	if code, _, errOut := run(t, dir, lines, "append", "orders-1", "--expected-version", "1"); code != 0 {
		t.Fatalf("append lines: %d %s", code, errOut)
	}
	// The JSON output of read is accepted by append: a copy of the stream
	// in another store.
	code, out, _ = run(t, dir, "", "read", "orders-1", "--json")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("read: %d %q", code, out)
	}
	copyDir := t.TempDir()
	if code, _, errOut := run(t, copyDir, out, "append", "orders-1"); code != 0 {
		t.Fatalf("append of read output: %d %s", code, errOut)
	}
	noTime := regexp.MustCompile(`"recorded_at":"[^"]*"`)
	if code, copied, _ := run(t, copyDir, "", "read", "orders-1", "--json"); code != 0 ||
		noTime.ReplaceAllString(copied, "") != noTime.ReplaceAllString(out, "") {
		t.Fatalf("the copy differs:\n%s\n%s", copied, out)
	}
	// Appending it again to the original is a partial retry: a conflict.
	if code, _, errOut := run(t, dir, out, "append", "orders-1"); code != 4 || !strings.Contains(errOut, "already recorded") {
		t.Fatalf("re-append of read output: %d %s", code, errOut)
	}
	code, out, _ = run(t, dir, "", "read", "orders-1", "--backward", "--limit", "1", "--json")
	var ev eventJSON
	if code != 0 || json.Unmarshal([]byte(out), &ev) != nil || ev.Type != "Shipped" || string(ev.DataBase64) != "\x00\x01\x02" {
		t.Fatalf("read backward: %d %q", code, out)
	}
	code, out, _ = run(t, dir, "", "read", "--type", "Paid", "--json")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"data":{"x":1}`) {
		t.Fatalf("read all filtered: %d %q", code, out)
	}
	code, out, _ = run(t, dir, "", "stat", "orders-1", "--json")
	if code != 0 || !strings.Contains(out, `"version":3`) {
		t.Fatalf("stat: %d %q", code, out)
	}
	code, out, _ = run(t, dir, "", "verify", "--json")
	if code != 0 || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("verify: %d %q", code, out)
	}
}

// Bad input gets a clear error, a non-zero exit status, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, "", "append", "s", "--type", "A", "--data", "1"); code != 0 {
		t.Fatal(errOut)
	}
	cases := []struct {
		name   string
		stdin  string
		args   []string
		status int
		want   string
	}{
		{"wrong expected version", "", []string{"append", "s", "--type", "A", "--data", "1", "--expected-version", "7"}, 4, "actual version 1"},
		{"bad expected version", "", []string{"append", "s", "--type", "A", "--expected-version", "seven"}, 2, "--expected-version"},
		{"invalid stream", "", []string{"append", "$system", "--type", "A", "--data", "1"}, 2, "reserved"},
		{"invalid json data", "", []string{"append", "s", "--type", "A", "--data", "{"}, 2, "not valid JSON"},
		{"unknown field", `{"type":"A","dta":1}` + "\n", []string{"append", "s"}, 2, "line 1"},
		{"second line bad", `{"type":"A","data":1}` + "\n" + `{"type":"","data":1}` + "\n", []string{"append", "s"}, 2, "line 2: type"},
		{"empty stdin", "", []string{"append", "s"}, 2, "no events"},
		{"bad id", `{"type":"A","id":"nope"}` + "\n", []string{"append", "s"}, 2, "UUID"},
		{"schema version too large", `{"type":"A","schema_version":99999999999}` + "\n", []string{"append", "s"}, 2,
			"line 1: schema_version: must be a whole number from 0 to 4294967295"},
		{"type not a string", `{"type":7}` + "\n", []string{"append", "s"}, 2, "line 1: type: must be a string"},
		{"data and data_base64", `{"type":"A","data":1,"data_base64":"AA=="}` + "\n", []string{"append", "s"}, 2, "not both"},
		{"stream mismatch", `{"type":"A","stream":"other"}` + "\n", []string{"append", "s"}, 2, "other"},
		{"unknown flag", "", []string{"read", "--bogus"}, 2, "unknown flag"},
		{"negative limit", "", []string{"read", "--limit", "-1"}, 2, "limit"},
		{"bad from", "", []string{"read", "--from", "x"}, 2, "--from"},
		{"position beyond end", "", []string{"read", "--from", "99"}, 2, "beyond the end"},
		{"missing stream", "", []string{"read", "nope"}, 3, "no events"},
		{"bad from-time", "", []string{"read", "--from-time", "yesterday"}, 2, "RFC 3339"},
		{"filters with stream", "", []string{"read", "s", "--type", "A"}, 2, "whole log"},
		{"delete missing", "", []string{"delete", "nope"}, 3, "no events"},
		{"too many args", "", []string{"append", "a", "b"}, 2, "STREAM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, dir, tc.stdin, tc.args...)
			if code != tc.status || !strings.Contains(errOut, tc.want) {
				t.Fatalf("status %d (want %d), stderr %q (want %q)", code, tc.status, errOut, tc.want)
			}
		})
	}
	code, out, _ := run(t, dir, "", "stat", "--json")
	if code != 0 || !strings.Contains(out, `"last_position":1`) {
		t.Fatalf("the log changed: %q", out)
	}
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, t.TempDir(), "", "stat", "nope", "--json")
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code != 3 || json.Unmarshal([]byte(out), &e) != nil || e.Error.Code != "not_found" || e.Error.Message == "" {
		t.Fatalf("status %d, output %q", code, out)
	}
}

func TestVerifyReportsDamage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		if code, _, errOut := run(t, dir, "", "append", "s", "--type", "A", "--data", `"hello"`); code != 0 {
			t.Fatal(errOut)
		}
	}
	seg := filepath.Join(dir, "00000000000000000001.seg")
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit in the middle record's payload (records start at offset 40).
	buf := make([]byte, 1)
	const off = 40 + 150
	f.ReadAt(buf, off)
	buf[0] ^= 0x10
	f.WriteAt(buf, off)
	f.Close()
	code, out, errOut := run(t, dir, "", "verify")
	if code != 5 || !strings.Contains(out, "DAMAGED segment 00000000000000000001.seg offset") || !strings.Contains(errOut, "checksum mismatch") {
		t.Fatalf("verify: %d %q %q", code, out, errOut)
	}
}

func TestBenchCommandsPrintJSON(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"bench", "append", "--writers", "4", "--batch", "10", "--events", "2000", "--json"},
		{"bench", "read", "--events", "3000", "--streams", "10", "--json"},
		{"bench", "disk", "--events", "2000", "--sync-each-events", "20", "--json"},
	} {
		code, out, errOut := run(t, filepath.Join(t.TempDir(), "d"), "", args...)
		var m map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("%v: %d %q %q", args, code, out, errOut)
		}
		for _, key := range []string{"events_per_sec", "sync_every_1000_rps"} {
			if v, ok := m[key]; ok && v.(float64) <= 0 {
				t.Fatalf("%v: %s = %v", args, key, v)
			}
		}
		if _, ok := m["events_per_sec"]; !ok && args[1] != "disk" {
			t.Fatalf("%v: no events_per_sec in %q", args, out)
		}
	}
	// A benchmark refuses to write into a directory holding data.
	dir := t.TempDir()
	run(t, dir, "", "append", "s", "--type", "A", "--data", "1")
	if code, _, errOut := run(t, dir, "", "bench", "append", "--events", "10"); code != 2 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("bench into data: %d %q", code, errOut)
	}
}
