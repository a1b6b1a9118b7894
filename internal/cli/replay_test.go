package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplayCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 1; i <= 6; i++ {
		if code, _, errOut := run(t, dir, "", "append", fmt.Sprintf("orders-%d", i%2), "--type", []string{"Placed", "Paid"}[i%2],
			"--data", fmt.Sprintf(`{"n":%d}`, i)); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	// The window is inclusive at both ends, the events printed as read prints them.
	code, out, errOut := run(t, dir, "", "replay", "--from", "2", "--to", "4", "--json")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"position":2`) || !strings.Contains(out, `"position":4`) ||
		!strings.Contains(errOut, "replayed 3 events of window 2..4") {
		t.Fatalf("replay 2..4: %d %q %q", code, out, errOut)
	}
	// --count-only --json: the result, whose digest is the same every time.
	var digests []string
	for range 2 {
		code, out, errOut := run(t, dir, "", "replay", "--prefix", "orders-1", "--type", "Paid", "--count-only", "--json")
		var res struct {
			From, To, Events int
			Digest           string
		}
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Events != 3 || res.From != 1 || res.To != 6 || len(res.Digest) != 64 {
			t.Fatalf("count-only: %d %q %q", code, out, errOut)
		}
		digests = append(digests, res.Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two replays of the same window: %v", digests)
	}
	// To beyond the end is cut; a paced replay delivers the same.
	if code, out, _ := run(t, dir, "", "replay", "--from", "5", "--to", "100", "--rate", "1000", "--count-only"); code != 0 ||
		!strings.Contains(out, "replayed 2 events of window 5..6") {
		t.Fatalf("to beyond the end: %d %q", code, out)
	}
}

func TestReplayBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, "", "append", "orders-1", "--type", "Placed", "--data", `{}`); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	before, _ := os.ReadDir(dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "9", "--to", "3"}, "from must not be after to"},
		{[]string{"--from", "yesterday"}, "RFC 3339"},
		{[]string{"--to", "2026-13-01T00:00:00Z"}, "RFC 3339"},
		{[]string{"--speed", "2", "--rate", "3"}, "either a speed or a rate"},
		{[]string{"--speed", "-1"}, "positive decimal number"},
		{[]string{"--rate", "NaN"}, "positive decimal number"},
		// Tiny speeds were taken and their waits overflowed: no pacing.
		{[]string{"--from", "1", "--to", "4", "--speed", "0.00000000001"}, "from 0.000001 to 1000000000000"},
		{[]string{"--speed", "1e-320"}, "from 0.000001"},
		{[]string{"--speed", "1e308"}, "from 0.000001"},
		{[]string{"--rate", "1e-320"}, "from 0.000001"},
		{[]string{"--stream", "orders-1", "--prefix", "orders-"}, "either stream names or a stream prefix"},
		{[]string{"--type", ""}, "must not be empty"},
		// The zero time and position 0 are the zero bound, "no bound": a
		// --to of either replayed the whole log.
		{[]string{"--to", "0001-01-01T00:00:00Z"}, "zero time"},
		{[]string{"--to", "0001-01-01T02:00:00+02:00"}, "zero time"},
		{[]string{"--from", "0001-01-01T00:00:00Z"}, "zero time"},
		{[]string{"--to", "0"}, "positions start at 1"},
	} {
		code, out, errOut := run(t, dir, "", append([]string{"replay", "--json"}, tc.args...)...)
		if code != 2 || !strings.Contains(out, `"code":"invalid_argument"`) || !strings.Contains(out, tc.want) {
			t.Errorf("replay %v: %d %q %q, want exit status 2 saying %q", tc.args, code, out, errOut, tc.want)
		}
	}
	after, _ := os.ReadDir(dir)
	if len(before) != len(after) {
		t.Fatalf("a refused replay changed the data directory: %v -> %v", before, after)
	}
	// A data directory that does not exist is not created.
	missing := filepath.Join(t.TempDir(), "none")
	if code, _, _ := run(t, missing, "", "replay"); code == 0 {
		t.Fatal("replay of a missing data directory succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("replay created %s", missing)
	}
}
