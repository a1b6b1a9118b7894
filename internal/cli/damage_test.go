package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/damagetest"
	"github.com/rewindhq/rewind/store"
)

// damagedStore makes a store in dir holding n events of each of streams
// s1 and s2, appended in alternating batches of 4 so that each stream is
// spread across the log, and flips one byte in the payload of s1's event
// at version damaged, as a bad sector would. It returns that event's
// position.
func damagedStore(t *testing.T, dir string, n int, damaged uint64) rewind.Position {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(dir, store.Config{Log: eventlog.Config{Durability: eventlog.None},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 4 {
		for _, st := range []string{"s1", "s2"} {
			batch := make([]rewind.Event, 4)
			for j := range batch {
				batch[j] = rewind.Event{Type: "T", Data: fmt.Appendf(nil, `{"n":%d}`, i+j+1)}
			}
			if _, err := s.Append(ctx, st, rewind.Any, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	evs, err := s.ReadStream(ctx, "s1", rewind.ReadStreamOptions{From: damaged, Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("s1@%d: %v", damaged, err)
	}
	pos := evs[0].Position
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damagetest.FlipPayloadByte(t, dir, pos)
	return pos
}

// B2: `rewind read STREAM` over a stream with a damaged event in the middle
// printed no event at all — embedded and through a server, with or
// without --limit. It prints every event before the damage in the order
// it reads, then reports the damage (exit status 5) saying which version
// it is and where to read on; a read that stops short of the damage, or
// starts past it, succeeds.
func TestReadStreamAcrossDamage(t *testing.T) {
	t.Parallel()
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("server=%v", remote), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			damagedStore(t, dir, 1000, 501)
			env := cleanEnv("REWIND_DATA_DIR=" + dir)
			if remote {
				url, admin := startServerIn(t, dir)
				env = cleanEnv("REWIND_SERVER="+url, "REWIND_TOKEN="+admin)
			}
			cases := []struct {
				args        []string
				first, last int // versions printed, in order; 0, 0: none
				status      int
			}{
				{[]string{"read", "s1"}, 1, 500, 5},
				{[]string{"read", "s1", "--limit", "600"}, 1, 500, 5},
				{[]string{"read", "s1", "--limit", "10"}, 1, 10, 0},
				{[]string{"read", "s1", "--backward"}, 1000, 502, 5},
				{[]string{"read", "s1", "--from", "501"}, 0, 0, 5},
				{[]string{"read", "s1", "--from", "502"}, 502, 1000, 0},
				{[]string{"read", "s1", "--backward", "--from", "500"}, 500, 1, 0},
			}
			for _, c := range cases {
				status, out, errOut := exe(t, env, "", c.args...)
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				if out == "" {
					lines = nil
				}
				var first, last int
				if len(lines) > 0 {
					fmt.Sscanf(strings.Fields(lines[0])[1], "s1@%d", &first)
					fmt.Sscanf(strings.Fields(lines[len(lines)-1])[1], "s1@%d", &last)
				}
				want := c.last - c.first + 1
				if c.first > c.last {
					want = c.first - c.last + 1
				}
				if c.first == 0 {
					want = 0
				}
				if status != c.status || first != c.first || last != c.last || len(lines) != want {
					t.Fatalf("%v: exit %d, %d events s1@%d..s1@%d; want exit %d, s1@%d..s1@%d\n%s", c.args, status,
						len(lines), first, last, c.status, c.first, c.last, errOut)
				}
				if c.status == 5 {
					if !strings.Contains(errOut, "corruption in segment 00000000000000000001.seg") ||
						!strings.Contains(errOut, `it is version 501 of stream "s1"`) {
						t.Fatalf("%v: stderr %q; want the damage named, with its version", c.args, errOut)
					}
					checkMessage(t, errOut)
				}
			}
			// With --json, the events then the error, as JSON lines.
			status, out, _ := exe(t, env, "", "read", "s1", "--json")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code, _ := jsonError(t, lines[len(lines)-1]); status != 5 || len(lines) != 501 || code != "corruption" {
				t.Fatalf("read --json: exit %d, %d lines, last %q", status, len(lines), lines[len(lines)-1])
			}
			if status, out, _ := exe(t, env, "", "read", "s2"); status != 0 || strings.Count(out, "\n") != 1000 {
				t.Fatalf("read s2, whose events lie around the damage: exit %d, %d events", status, strings.Count(out, "\n"))
			}
		})
	}
}

// B2: `rewind consume` of a group over a damaged log printed nothing and
// exited 10 (a failed disk), the group "failed". It prints every event of
// the group before the damage, then exits 5 saying where the damage is and
// how to go on; the group's status is "damaged" (stalled); a reset to the
// damaged position delivers the rest. Embedded and through a server.
func TestConsumeAcrossDamage(t *testing.T) {
	t.Parallel()
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("server=%v", remote), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pos := damagedStore(t, dir, 1000, 501)
			env := cleanEnv("REWIND_DATA_DIR=" + dir)
			if remote {
				url, admin := startServerIn(t, dir)
				env = cleanEnv("REWIND_SERVER="+url, "REWIND_TOKEN="+admin)
			}
			if status, _, errOut := exe(t, env, "", "groups", "create", "g", "--prefix", "s1"); status != 0 {
				t.Fatalf("groups create: %d %s", status, errOut)
			}
			status, out, errOut := exe(t, env, "", "consume", "g", "--idle", "1m")
			if n := strings.Count(out, "\n"); status != 5 || n != 500 || !strings.Contains(out, "s1@500 ") ||
				!strings.Contains(errOut, "the log is damaged") || !strings.Contains(errOut, fmt.Sprintf("position %d", pos)) ||
				!strings.Contains(errOut, fmt.Sprintf("reset the group to position %d", pos)) {
				t.Fatalf("consume over the damage: exit %d, %d events; want exit 5 after s1@1..s1@500\n%s", status, n, errOut)
			}
			checkMessage(t, errOut)
			// The ack floor is committed up to the damage. (Without a
			// server, info describes an engine opened for the command,
			// whose reader may not have met the damage yet: only the
			// server's says "damaged" for sure.)
			status, out, _ = exe(t, env, "", "groups", "info", "g", "--json")
			var in groupInfoJSON
			if err := json.Unmarshal([]byte(out), &in); status != 0 || err != nil || in.AckFloor != pos-1 ||
				remote && (in.Status != "damaged" || !in.Stalled || !strings.Contains(in.StatusReason, "reset the group")) {
				t.Fatalf("groups info: exit %d %s; want ack floor %d (and through the server status damaged, stalled)",
					status, out, pos-1)
			}
			if status, _, errOut := exe(t, env, "", "groups", "reset", "g", "--to-position", fmt.Sprint(pos), "--execute"); status != 0 {
				t.Fatalf("reset past the damage: %d %s", status, errOut)
			}
			status, out, errOut = exe(t, env, "", "consume", "g", "--count", "499")
			if n := strings.Count(out, "\n"); status != 0 || n != 499 || !strings.Contains(out, "s1@502 ") ||
				!strings.Contains(out, "s1@1000 ") {
				t.Fatalf("consume after the reset: exit %d, %d events; want s1@502..s1@1000\n%s", status, n, errOut)
			}
		})
	}
}
