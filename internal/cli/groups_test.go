package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
)

// TestGroupsEmbedded walks the groups commands on the embedded store:
// create, ls and info with --json, consume with --count, a reset that
// only plans and one that is executed, parked ls and purge, rm.
func TestGroupsEmbedded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lines strings.Builder
	for i := range 6 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	if code, _, errOut := run(t, dir, lines.String(), "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, out, errOut := run(t, dir, "", "groups", "create", "billing", "--prefix", "orders-", "--json"); code != 0 ||
		!strings.Contains(out, `"name":"billing"`) {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := run(t, dir, "", "groups", "create", "billing"); code != 4 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("create again: %d %s", code, errOut)
	}
	code, out, errOut := run(t, dir, "", "groups", "ls", "--json")
	var ls struct {
		Groups []struct {
			Config struct {
				Name string `json:"name"`
			} `json:"config"`
			Status  string  `json:"status"`
			Stalled bool    `json:"stalled"`
			Pending int     `json:"pending"`
			Age     float64 `json:"oldest_unacked_age_seconds"`
		} `json:"groups"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || len(ls.Groups) != 1 || ls.Groups[0].Config.Name != "billing" {
		t.Fatalf("ls: %d %q %s", code, out, errOut)
	}

	// consume prints and acks 4 of the 6 events.
	code, out, errOut = run(t, dir, "", "consume", "billing", "--count", "4", "--json")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, `"attempt":1`) {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	var first struct {
		Event struct {
			Position uint64 `json:"position"`
		} `json:"event"`
	}
	json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first)
	code, out, _ = run(t, dir, "", "groups", "info", "billing", "--json")
	var info struct {
		AckFloor uint64 `json:"ack_floor"`
		Acked    int    `json:"acked"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.AckFloor != first.Event.Position+3 {
		t.Fatalf("info after consuming 4: %d %q (first at %d)", code, out, first.Event.Position)
	}

	// A reset without --execute prints the plan and changes nothing.
	code, out, errOut = run(t, dir, "", "groups", "reset", "billing", "--shift-by", "-2")
	if code != 0 || !strings.Contains(out, "would move") || !strings.Contains(out, "events delivered again") ||
		!strings.Contains(out, "--execute") {
		t.Fatalf("reset plan: %d %q %s", code, out, errOut)
	}
	if _, out, _ := run(t, dir, "", "groups", "info", "billing", "--json"); !strings.Contains(out, fmt.Sprintf(`"ack_floor":%d`, info.AckFloor)) {
		t.Fatalf("the plan changed the group: %s", out)
	}
	code, out, errOut = run(t, dir, "", "groups", "reset", "billing", "--shift-by", "-2", "--execute", "--json")
	var plan struct {
		From, To  uint64
		Redeliver int
		Executed  bool
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || !plan.Executed || plan.Redeliver < 2 || plan.To != info.AckFloor-2 {
		t.Fatalf("reset --execute: %d %q %s", code, out, errOut)
	}
	// The two events come again, then the two never consumed.
	code, out, _ = run(t, dir, "", "consume", "billing", "--count", "4", "--json")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, fmt.Sprintf(`"position":%d`, plan.To+1)) {
		t.Fatalf("consume after the reset: %d %q", code, out)
	}

	if code, _, errOut := run(t, dir, "", "groups", "reset", "billing"); code != 2 || !strings.Contains(errOut, "exactly one") {
		t.Fatalf("reset without a target: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "groups", "info", "nope"); code != 3 || !strings.Contains(errOut, "list the groups") {
		t.Fatalf("info of an unknown group: %d %s", code, errOut)
	}
	if code, out, _ := run(t, dir, "", "groups", "parked", "ls", "billing", "--json"); code != 0 || !strings.Contains(out, `"parked":[]`) {
		t.Fatalf("parked ls: %d %q", code, out)
	}
	if code, _, errOut := run(t, dir, "", "groups", "parked", "replay", "billing"); code != 2 || !strings.Contains(errOut, "--server") {
		t.Fatalf("parked replay without a server: %d %s", code, errOut)
	}
	if code, out, _ := run(t, dir, "", "groups", "parked", "purge", "billing", "--json"); code != 0 || !strings.Contains(out, `"purged":0`) {
		t.Fatalf("parked purge: %d %q", code, out)
	}
	if code, _, errOut := run(t, dir, "", "groups", "create", "bad", "--start", "middle"); code != 2 || !strings.Contains(errOut, "--start") {
		t.Fatalf("a bad start: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "groups", "create", "huge", "--max-ack-pending", "50000000", "--max-pending", "50000000"); code != 2 {
		t.Fatalf("an absurd limit: %d %s", code, errOut)
	}
	if code, out, _ := run(t, dir, "", "groups", "rm", "billing", "--json"); code != 0 || !strings.Contains(out, `"deleted":true`) {
		t.Fatalf("rm: %d %q", code, out)
	}
	if code, out, _ := run(t, dir, "", "groups", "ls", "--json"); code != 0 || strings.TrimSpace(out) != `{"groups":[]}` {
		t.Fatalf("ls after rm: %d %q", code, out)
	}
}

// TestGroupsThroughServer: the same commands against a server, with
// parked events: a member parks them (term through the API), parked ls
// shows them, replay hands them back to a consumer that acks them, purge
// removes what is left.
func TestGroupsThroughServer(t *testing.T) {
	t.Parallel()
	url, token := startServer(t)
	srv := []string{"--server", url, "--token", token}
	cmd := func(args ...string) (int, string, string) { return run(t, "", "", append(args, srv...)...) }
	var lines strings.Builder
	for i := range 3 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	if code, _, errOut := run(t, "", lines.String(), append([]string{"append", "orders-1"}, srv...)...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := cmd("groups", "create", "billing", "--prefix", "orders-", "--max-deliveries", "1",
		"--ack-wait", "50ms"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	// A member that takes the events and dies with them: max deliveries 1
	// parks each.
	if code, out, errOut := cmd("consume", "billing", "--count", "3", "--json"); code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	if code, out, _ := cmd("groups", "info", "billing", "--json"); code != 0 || !strings.Contains(out, `"acked":3`) {
		t.Fatalf("info: %d %q", code, out)
	}
	if code, _, errOut := cmd("groups", "reset", "billing", "--to-position", "0", "--execute"); code != 0 {
		t.Fatalf("reset: %d %s", code, errOut)
	}
	// consume --count 1 takes one event only, even allowed 3 un-acked:
	// the others were not delivered (they were, and went back with their
	// delivery counted, so with max deliveries 1 they were parked).
	if code, _, errOut := cmd("consume", "billing", "--count", "1", "--max-ack-pending", "3"); code != 0 {
		t.Fatalf("consume 1: %d %s", code, errOut)
	}
	if code, out, _ := cmd("groups", "info", "billing", "--json"); code != 0 || !strings.Contains(out, `"parked":0`) ||
		!strings.Contains(out, `"pending":2`) {
		t.Fatalf("info after consume --count 1: %d %q, want 2 pending, none parked", code, out)
	}
	// A member whose handler fails: with max deliveries 1 each is parked.
	c, err := client.New(url, client.Config{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Consume(context.Background(), "billing", func(context.Context, *consumer.Message) error {
		return errors.New("fails")
	}, client.ConsumeOptions{Limit: 2}); err != nil {
		t.Fatalf("a failing member: %v", err)
	}
	code, out, errOut := cmd("groups", "parked", "ls", "billing", "--json")
	var parked struct {
		Parked []struct {
			Reason string `json:"reason"`
		} `json:"parked"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &parked) != nil || len(parked.Parked) != 2 {
		t.Fatalf("parked ls: %d %q %s", code, out, errOut)
	}
	if code, out, _ := cmd("groups", "parked", "ls", "billing"); code != 0 || !strings.Contains(out, "max deliveries reached") {
		t.Fatalf("parked ls text: %d %q", code, out)
	}
	if code, out, _ := cmd("groups", "parked", "replay", "billing", "--json"); code != 0 || !strings.Contains(out, `"replaying":2`) {
		t.Fatalf("parked replay: %d %q", code, out)
	}
	if code, out, _ := cmd("consume", "billing", "--count", "2", "--json"); code != 0 || strings.Count(out, `"replay":true`) != 2 {
		t.Fatalf("consume the replay: %d %q", code, out)
	}
	if code, out, _ := cmd("groups", "parked", "purge", "billing", "--json"); code != 0 || !strings.Contains(out, `"purged":0`) {
		t.Fatalf("parked purge: %d %q", code, out)
	}
	if code, out, _ := cmd("groups", "ls"); code != 0 || !strings.Contains(out, "billing") || !strings.Contains(out, "OLDEST UNACKED") {
		t.Fatalf("ls: %d %q", code, out)
	}
	if code, _, errOut := run(t, "", `{"type":"GroupCommit","data":{}}`, append([]string{"append", "_rewind.group.billing"}, srv...)...); code != 2 || !strings.Contains(errOut, "only the server writes it") {
		t.Fatalf("append to a state stream: %d %s", code, errOut)
	}
}

// TestGroupsHelp: every groups command explains itself.
func TestGroupsHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"groups"}, {"groups", "reset"}, {"groups", "parked"}, {"consume"}, {"groups", "create"}} {
		code, out, _ := run(t, t.TempDir(), "", append(args, "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Example") && args[len(args)-1] != "parked" {
			t.Errorf("%v --help: %d %q", args, code, out)
		}
	}
	_, out, _ := run(t, t.TempDir(), "", "groups", "reset", "--help")
	if !strings.Contains(out, "--execute") || !strings.Contains(out, "changes nothing") {
		t.Errorf("reset --help does not explain the plan: %q", out)
	}
}

// TestBenchGroups runs `rewind bench groups` small, against a server and
// the NATS server of the test environment ($REWIND_NATS_URL, or
// nats://127.0.0.1:4222), unordered and ordered: every event is counted
// and acked, and the report carries the rates and the ratio.
func TestBenchGroups(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	natsURL := cmpOr(os.Getenv("REWIND_NATS_URL"), "nats://127.0.0.1:4222")
	for _, ordered := range []bool{false, true} {
		args := []string{"--server", url, "--token", admin, "bench", "groups", "--members", "3", "--events", "3000",
			"--keys", "100", "--nats", natsURL, "--rounds", "1", "--json"}
		if ordered {
			args = append(args, "--ordered")
		}
		code, out, errOut := run(t, "", "", args...)
		var r groupsBenchReport
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Events != 3000 || r.EventsPerSec <= 0 ||
			r.Ordered != ordered || r.Members != 3 || r.NATS == nil || r.NATS.Messages != 3000 || r.Ratio <= 0 {
			t.Fatalf("bench groups (ordered %t): %d %q %s", ordered, code, out, errOut)
		}
	}
	if code, _, errOut := run(t, "", "", "--server", url, "--token", admin, "bench", "groups", "--events", "10",
		"--keys", "20"); code != 2 || !strings.Contains(errOut, "--keys") {
		t.Fatalf("more keys than events: %d %s", code, errOut)
	}
}

// TestGroupsBadNumbers: a cap, a count or a duration given on the command
// line that the group or the member would not take as given (a negative,
// or 0 for a cap, which the library would read as its default) is refused
// with exit status 2, naming the flag, and nothing is created or consumed;
// so is a filter no stream can match.
func TestGroupsBadNumbers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, `{"type":"E","data":{}}`+"\n", "append", "s-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"--max-ack-pending", "-5"}, {"--max-parked", "-1"}, {"--max-deliveries", "0"}, {"--max-deliveries", "-2"},
		{"--max-pending", "0"}, {"--member-max-ack-pending", "-1"}, {"--replay-chunk", "0"}, {"--ack-wait", "-1s"},
		{"--types", "a b"}, {"--prefix", "a b"}, {"--prefix", "$x"},
	} {
		code, _, errOut := run(t, dir, "", append([]string{"groups", "create", "x"}, args...)...)
		if code != 2 || !strings.Contains(errOut, strings.TrimPrefix(args[0], "--")[:4]) {
			t.Errorf("create %v: exit %d %s, want 2 naming the flag", args, code, errOut)
		}
	}
	if code, out, _ := run(t, dir, "", "groups", "ls", "--json"); code != 0 || strings.Contains(out, `"name"`) {
		t.Fatalf("bad input created a group: %d %s", code, out)
	}
	if code, _, errOut := run(t, dir, "", "groups", "create", "g"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	for _, args := range [][]string{{"--count", "-1"}, {"--idle", "-1s"}, {"--max-ack-pending", "-3"}} {
		code, _, errOut := run(t, dir, "", append([]string{"consume", "g"}, args...)...)
		if code != 2 || !strings.Contains(errOut, args[0]) {
			t.Errorf("consume %v: exit %d %s, want 2 naming the flag", args, code, errOut)
		}
	}
	if _, out, _ := run(t, dir, "", "groups", "info", "g", "--json"); !strings.Contains(out, `"acked":0`) {
		t.Fatalf("a refused consume acked events: %s", out)
	}
}

// TestConsumeCountReleasesAtOnce: a `consume --count N` member takes no
// event beyond N (it took some ahead, which went back when it stopped):
// none is delayed, the rest are pending for the next member.
func TestConsumeCountReleasesAtOnce(t *testing.T) {
	t.Parallel()
	url, token := startServer(t)
	srv := []string{"--server", url, "--token", token}
	cmd := func(args ...string) (int, string, string) { return run(t, "", "", append(args, srv...)...) }
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	if code, _, errOut := run(t, "", lines.String(), append([]string{"append", "orders-1"}, srv...)...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := cmd("groups", "create", "g", "--backoff", "1h"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	if code, out, errOut := cmd("consume", "g", "--count", "3", "--json"); code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	var in struct {
		Pending, Delayed, InFlight int
		Acked                      int
	}
	for range 500 {
		_, out, _ := cmd("groups", "info", "g", "--json")
		json.Unmarshal([]byte(out), &in)
		if in.InFlight == 0 {
			break
		}
	}
	if in.Acked != 3 || in.Delayed != 0 || in.Pending != 7 || in.InFlight != 0 {
		t.Fatalf("after consume --count 3: %+v, want 7 pending, none delayed", in)
	}
}

// TestGroupsBounded: a group created with --end delivers the events of
// its window only; `consume` on the embedded store stops by itself when
// the group is complete, and info says so; events appended later are not
// delivered; bad ends are refused with exit 2 and create nothing.
func TestGroupsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	if code, _, errOut := run(t, dir, lines.String(), "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"--end", "position:0"}, {"--end", "5"}, {"--end", "position:11"}, {"--end", "time:yesterday"},
		{"--start", "position:6", "--end", "position:6"}, {"--start", "end", "--end", "position:3"},
		// The zero time is the zero End, "no end": it created an unbounded group.
		{"--end", "time:0001-01-01T00:00:00Z"}, {"--end", "time:0001-01-01T01:00:00+01:00"},
	} {
		code, _, errOut := run(t, dir, "", append([]string{"groups", "create", "w"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "end") {
			t.Errorf("create %v: exit %d %s, want 2 naming the end", args, code, errOut)
		}
	}
	// The zero time as a start, or as a reset target, is refused too.
	for _, args := range [][]string{
		{"create", "w", "--start", "time:0001-01-01T00:00:00Z", "--json"},
		{"create", "w", "--end", "time:0001-01-01T00:00:00Z", "--json"},
	} {
		code, out, errOut := run(t, dir, "", append([]string{"groups"}, args...)...)
		if code != 2 || !strings.Contains(out, `"code":"invalid_argument"`) || !strings.Contains(out, "zero time") {
			t.Errorf("groups %v: exit %d %q %s, want 2 invalid_argument saying zero time", args, code, out, errOut)
		}
	}
	if code, out, _ := run(t, dir, "", "groups", "ls", "--json"); code != 0 || strings.Contains(out, `"name"`) {
		t.Fatalf("bad ends created a group: %d %s", code, out)
	}
	code, out, errOut := run(t, dir, "", "groups", "create", "w", "--prefix", "orders-", "--start", "position:3",
		"--end", "position:7")
	if code != 0 || !strings.Contains(out, "end at position 7") {
		t.Fatalf("create: %d %q %s", code, out, errOut)
	}
	if code, out, errOut := run(t, dir, "", "groups", "reset", "w", "--to-time", "0001-01-01T00:00:00Z", "--json"); code != 2 ||
		!strings.Contains(out, `"code":"invalid_argument"`) || !strings.Contains(out, "zero time") {
		t.Fatalf("reset to the zero time: exit %d %q %s, want 2 invalid_argument saying zero time", code, out, errOut)
	}
	if code, _, errOut := run(t, dir, lines.String(), "append", "orders-1"); code != 0 {
		t.Fatalf("append more: %d %s", code, errOut)
	}
	code, out, errOut = run(t, dir, "", "consume", "w", "--json")
	if code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("consume: %d %q %s, want the 4 events of (3, 7] and an end", code, out, errOut)
	}
	for p := 4; p <= 7; p++ {
		if !strings.Contains(out, fmt.Sprintf(`"position":%d,`, p)) {
			t.Fatalf("consume did not deliver position %d: %s", p, out)
		}
	}
	code, out, _ = run(t, dir, "", "groups", "info", "w", "--json")
	var info struct {
		Status   string `json:"status"`
		Bounded  bool   `json:"bounded"`
		End      uint64 `json:"end"`
		Complete bool   `json:"complete"`
		Acked    int    `json:"acked"`
		Stalled  bool   `json:"stalled"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Status != "complete" || !info.Complete ||
		!info.Bounded || info.End != 7 || info.Stalled {
		t.Fatalf("info: %d %q", code, out)
	}
	if code, out, _ := run(t, dir, "", "groups", "info", "w"); code != 0 || !strings.Contains(out, "complete           true") {
		t.Fatalf("info text: %d %q", code, out)
	}
	// Complete: a second consume ends at once with nothing.
	if code, out, errOut := run(t, dir, "", "consume", "w", "--json"); code != 0 || out != "" {
		t.Fatalf("consume a complete group: %d %q %s", code, out, errOut)
	}
	// Its floor moved past the end, a plan back counts only the window's
	// events of the prefix (4..7), all the group delivers again, not those
	// after 7.
	if code, out, errOut := run(t, dir, "", "groups", "reset", "w", "--to-position", "15", "--execute"); code != 0 ||
		!strings.Contains(out, "0 events skipped") {
		t.Fatalf("reset forward past the end: %d %q %s", code, out, errOut)
	}
	for _, args := range [][]string{{"--to-position", "3"}, {"--shift-by", "-4"}} {
		code, out, errOut := run(t, dir, "", append([]string{"groups", "reset", "w"}, args...)...)
		if code != 0 || !strings.Contains(out, "from 15 to 3") || !strings.Contains(out, "  4 events delivered again") {
			t.Errorf("plan back %v: %d %q %s, want 4 events (4..7) delivered again", args, code, out, errOut)
		}
	}
}

// TestGroupsBoundedThroughServer: the end travels through the API and
// back, the server's group completes after its window, and `consume`
// through the server ends by itself then.
func TestGroupsBoundedThroughServer(t *testing.T) {
	t.Parallel()
	url, token := startServer(t)
	srv := []string{"--server", url, "--token", token}
	cmd := func(stdin string, args ...string) (int, string, string) {
		return run(t, "", stdin, append(args, srv...)...)
	}
	var lines strings.Builder
	for i := range 5 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	if code, _, errOut := cmd(lines.String(), "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, out, errOut := cmd("", "groups", "create", "w", "--end", "position:2", "--json"); code != 0 ||
		!strings.Contains(out, `"end":{"position":2}`) {
		t.Fatalf("create: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := cmd("", "groups", "create", "x", "--end", "position:99"); code != 2 ||
		!strings.Contains(errOut, "after the end of the log") {
		t.Fatalf("an end beyond the log: %d %s", code, errOut)
	}
	// No --count: the server says when the group is complete, and consume ends.
	if code, out, errOut := cmd("", "consume", "w", "--json"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := cmd("", "groups", "info", "w", "--json")
		if code == 0 && strings.Contains(out, `"status":"complete"`) && strings.Contains(out, `"end":2,`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not complete: %d %s", code, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGroupsResetBoundedClampsToStart: a reset of a bounded group never
// goes below its window's start, whatever the target, and says so,
// embedded and through a server (an outside test: a window of 2 planned 10
// to redeliver, then consume delivered 1..10).
func TestGroupsResetBoundedClampsToStart(t *testing.T) {
	t.Parallel()
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		resetClampsToStart(t, lines.String(), func(stdin string, args ...string) (int, string, string) {
			return run(t, dir, stdin, args...)
		})
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		url, token := startServer(t)
		resetClampsToStart(t, lines.String(), func(stdin string, args ...string) (int, string, string) {
			return run(t, "", stdin, append(args, "--server", url, "--token", token)...)
		})
	})
}

func resetClampsToStart(t *testing.T, lines string, run func(stdin string, args ...string) (int, string, string)) {
	if code, _, errOut := run(lines, "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := run("", "groups", "create", "win", "--start", "position:8", "--end",
		"position:10"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	if code, out, errOut := run("", "consume", "win", "--json"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	for _, args := range [][]string{{"--to-position", "0"}, {"--shift-by", "-100"}, {"--by-duration", "10000h"},
		{"--to-time", "2001-01-01T00:00:00Z"}} {
		code, out, errOut := run("", append([]string{"groups", "reset", "win", "--json"}, args...)...)
		var plan struct {
			To        uint64 `json:"to"`
			Redeliver int64  `json:"redeliver"`
			Clamped   bool   `json:"clamped"`
			Note      string `json:"note"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || plan.To != 8 || plan.Redeliver != 2 ||
			!plan.Clamped || !strings.Contains(plan.Note, "start") {
			t.Errorf("plan %v: %d %q %s, want to 8 with 2 to redeliver, clamped with a note", args, code, out, errOut)
		}
	}
	code, out, errOut := run("", "groups", "reset", "win", "--to-position", "0", "--execute")
	if code != 0 || !strings.Contains(out, "from 10 to 8") || !strings.Contains(out, "note:") ||
		!strings.Contains(out, "  2 events delivered again") {
		t.Fatalf("reset --execute: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run("", "consume", "win", "--json")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"position":9,`) ||
		!strings.Contains(out, `"position":10,`) {
		t.Fatalf("consume after the reset: %d %q %s, want 9 and 10 only", code, out, errOut)
	}
}

// consumeCountLosesNothing creates an at-most-once group over the 10
// events cmd's store holds (bounded or not), runs `consume --count 1` 10
// times, and checks that it printed 1..10 in turn: an outside test saw 1 3
// 5 7 9, the others never printed, the member having fetched them ahead.
func consumeCountLosesNothing(t *testing.T, cmd func(args ...string) (int, string, string), name string, bounded bool) {
	t.Helper()
	args := []string{"groups", "create", name, "--mode", "at-most-once", "--start", "position:0"}
	if bounded {
		args = append(args, "--end", "position:10")
	}
	if code, _, errOut := cmd(args...); code != 0 {
		t.Fatalf("create %s: %d %s", name, code, errOut)
	}
	for p := 1; p <= 10; p++ {
		code, out, errOut := cmd("consume", name, "--count", "1", "--json")
		if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, fmt.Sprintf(`"position":%d,`, p)) {
			t.Fatalf("%s (bounded %v): consume #%d: %d %q %s, want position %d", name, bounded, p, code, out, errOut, p)
		}
	}
	if bounded {
		if code, out, _ := cmd("groups", "info", name, "--json"); code != 0 || !strings.Contains(out, `"complete":true`) {
			t.Fatalf("%s: not complete after its 10 events: %d %s", name, code, out)
		}
	}
}

// TestConsumeCountAtMostOnceLosesNothing: `consume --count N` on an
// at-most-once group prints every event in turn, none lost, embedded and
// through a server, bounded and not.
func TestConsumeCountAtMostOnceLosesNothing(t *testing.T) {
	t.Parallel()
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d}}`+"\n", i)
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if code, _, errOut := run(t, dir, lines.String(), "append", "orders-1"); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
		cmd := func(args ...string) (int, string, string) { return run(t, dir, "", args...) }
		for i := range 20 {
			consumeCountLosesNothing(t, cmd, fmt.Sprintf("amo%d", i), i%2 == 0)
		}
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		url, token := startServer(t)
		srv := []string{"--server", url, "--token", token}
		cmd := func(args ...string) (int, string, string) { return run(t, "", "", append(args, srv...)...) }
		if code, _, errOut := run(t, "", lines.String(), append([]string{"append", "orders-1"}, srv...)...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
		for i := range 20 {
			consumeCountLosesNothing(t, cmd, fmt.Sprintf("amo%d", i), i%2 == 0)
		}
	})
}

// TestGroupsResetPlanCountsOnlyDelivered: the reset plan counts as
// delivered again only events a member was handed, embedded and through
// a server, whose engine reads ahead of its members. An outside test
// (`groups create bg3 --prefix ord-1 --types A,C --start position:999
// --end position:18000`, nothing consumed) got "redeliver":6003 from
// `groups reset bg3 --to-position 999` through a server, and 6001 from
// `--shift-by -1` after `consume --count 3`, where 1 comes again.
func TestGroupsResetPlanCountsOnlyDelivered(t *testing.T) {
	t.Parallel()
	var lines strings.Builder
	for i := range 60 { // 1..60: A, B, C, A, …
		fmt.Fprintf(&lines, `{"type":%q}`+"\n", []string{"A", "B", "C"}[i%3])
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		resetPlanCountsOnlyDelivered(t, lines.String(), false, func(stdin string, args ...string) (int, string, string) {
			return run(t, dir, stdin, args...)
		})
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		url, token := startServer(t)
		resetPlanCountsOnlyDelivered(t, lines.String(), true, func(stdin string, args ...string) (int, string, string) {
			return run(t, "", stdin, append(args, "--server", url, "--token", token)...)
		})
	})
}

// TestGroupsResetPlanAfterExecutedReset: after an executed reset forward
// a plan back counts only the events a member was handed, not the
// positions the reset skipped, embedded (each command reopens the group
// from its records) and through a server. An outside test consumed 5,
// ran `groups reset GROUP --to-position 50 --execute`, and the plan of
// `--to-position 0` said "redeliver":50.
func TestGroupsResetPlanAfterExecutedReset(t *testing.T) {
	t.Parallel()
	var lines strings.Builder
	for range 60 {
		lines.WriteString(`{"type":"T"}` + "\n")
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		resetPlanAfterExecutedReset(t, lines.String(), func(stdin string, args ...string) (int, string, string) {
			return run(t, dir, stdin, args...)
		})
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		url, token := startServer(t)
		resetPlanAfterExecutedReset(t, lines.String(), func(stdin string, args ...string) (int, string, string) {
			return run(t, "", stdin, append(args, "--server", url, "--token", token)...)
		})
	})
}

func resetPlanAfterExecutedReset(t *testing.T, lines string, run func(stdin string, args ...string) (int, string, string)) {
	if code, _, errOut := run(lines, "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := run("", "groups", "create", "g"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	if code, out, errOut := run("", "consume", "g", "--count", "5", "--json"); code != 0 || strings.Count(out, "\n") != 5 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	var p struct {
		From      uint64 `json:"from"`
		Redeliver int64  `json:"redeliver"`
		Skip      int64  `json:"skip"`
		Executed  bool   `json:"executed"`
	}
	reset := func(args ...string) {
		t.Helper()
		p.Executed = false
		code, out, errOut := run("", append([]string{"groups", "reset", "g", "--json"}, args...)...)
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("reset %v: %d %q %s", args, code, out, errOut)
		}
	}
	if reset("--to-position", "50", "--execute"); !p.Executed || p.Skip != 45 {
		t.Fatalf("reset forward to 50: %+v, want 45 skipped", p)
	}
	if reset("--to-position", "0"); p.From != 50 || p.Redeliver != 5 || p.Executed {
		t.Fatalf("plan back to 0 after 5 consumed and a reset forward to 50: %+v, want 5 to redeliver", p)
	}
	if reset("--shift-by", "5", "--execute"); !p.Executed || p.Skip != 5 {
		t.Fatalf("shift forward by 5: %+v, want 5 skipped", p)
	}
	if reset("--to-position", "0"); p.From != 55 || p.Redeliver != 5 {
		t.Fatalf("plan back to 0 after a shift forward: %+v, want 5 to redeliver", p)
	}
}

func resetPlanCountsOnlyDelivered(t *testing.T, lines string, server bool,
	run func(stdin string, args ...string) (int, string, string)) {
	if code, _, errOut := run(lines, "append", "ord-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	// The group's events: 12, 13, 15, 16, 18, … 48 (25 of them).
	if code, _, errOut := run("", "groups", "create", "bg3", "--prefix", "ord-1", "--types", "A,C", "--start",
		"position:10", "--end", "position:48"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	if server { // the server's engine reads the whole window ahead of any member
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out, _ := run("", "groups", "info", "bg3", "--json")
			if code == 0 && strings.Contains(out, `"read_position":48,`) && strings.Contains(out, `"pending":25,`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the server's group did not read its window: %d %s", code, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	type plan struct {
		From      uint64 `json:"from"`
		To        uint64 `json:"to"`
		Redeliver int64  `json:"redeliver"`
		Skip      int64  `json:"skip"`
	}
	reset := func(args ...string) plan {
		t.Helper()
		code, out, errOut := run("", append([]string{"groups", "reset", "bg3", "--json"}, args...)...)
		var p plan
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("reset %v: %d %q %s", args, code, out, errOut)
		}
		return p
	}
	if p := reset("--to-position", "10"); p.Redeliver != 0 {
		t.Fatalf("nothing delivered yet: plan %+v, want 0 to redeliver", p)
	}
	if code, out, errOut := run("", "consume", "bg3", "--count", "3", "--json"); code != 0 ||
		strings.Count(out, "\n") != 3 {
		t.Fatalf("consume: %d %q %s", code, out, errOut)
	}
	if p := reset("--shift-by", "-1"); p.From != 15 || p.To != 14 || p.Redeliver != 1 {
		t.Fatalf("back by 1 after 3 acks: plan %+v, want from 15 to 14 and 1 to redeliver", p)
	}
	if p := reset("--to-position", "10"); p.Redeliver != 3 {
		t.Fatalf("back to the start after 3 acks: plan %+v, want 3 to redeliver", p)
	}
	if p := reset("--to-position", "21"); p.Skip != 4 {
		t.Fatalf("forward to 21 after 3 acks: plan %+v, want 4 skipped (16, 18, 19, 21)", p)
	}
}
