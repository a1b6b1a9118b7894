package audit_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// chain builds n sealed entries in memory.
func chain(t *testing.T, n int) []audit.Entry {
	t.Helper()
	out := make([]audit.Entry, n)
	prev := audit.Genesis
	for i := range out {
		e := audit.Entry{Seq: int64(i + 1), Time: time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC), Kind: "test.step",
			Subject: "run-1", Origin: audit.Origin{Actor: "alice", Host: "h", Version: "v", Revision: "r"},
			Counts: map[string]int64{"i": int64(i)}}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev, out[i] = e.Hash, e
	}
	return out
}

func verify(entries []audit.Entry, headSeq int64, headHash string) error {
	v := audit.NewVerifier()
	for i := range entries {
		if err := v.Add(&entries[i]); err != nil {
			return err
		}
	}
	return v.End(headSeq, headHash)
}

func TestVerifyNamesTheTamperedEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  func([]audit.Entry) []audit.Entry
		seq     int64
		problem audit.Problem
	}{
		{"content changed", func(c []audit.Entry) []audit.Entry { c[3].Actor = "mallory"; return c }, 4, audit.Altered},
		{"content changed and rehashed", func(c []audit.Entry) []audit.Entry {
			c[3].Actor = "mallory"
			c[3].Seal(c[3].PrevHash)
			return c
		}, 4, audit.Altered},
		{"entry removed", func(c []audit.Entry) []audit.Entry { return append(c[:4:4], c[5:]...) }, 5, audit.Removed},
		{"first entry removed", func(c []audit.Entry) []audit.Entry { return c[1:] }, 1, audit.Removed},
		{"entry inserted and renumbered", func(c []audit.Entry) []audit.Entry {
			forged := audit.Entry{Seq: 3, Time: c[2].Time, Kind: "test.step", Origin: audit.Origin{Actor: "mallory"}}
			forged.Seal(c[1].Hash)
			out := append(append(append([]audit.Entry{}, c[:2]...), forged), c[2:]...)
			for i := 3; i < len(out); i++ {
				out[i].Seq++
			}
			return out
		}, 3, audit.Inserted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := chain(t, 8)
			last := c[len(c)-1]
			err := verify(tt.tamper(c), last.Seq, last.Hash)
			var te *audit.TamperError
			if !errors.As(err, &te) {
				t.Fatalf("verify = %v, want a *TamperError", err)
			}
			if te.Seq != tt.seq || te.Problem != tt.problem {
				t.Fatalf("verify named entry %d %s (%v), want entry %d %s", te.Seq, te.Problem, err, tt.seq, tt.problem)
			}
			if !errors.Is(err, audit.ErrTampered) || rewind.CodeOf(err) != rewind.CodeCorruption {
				t.Fatalf("error %v does not match ErrTampered and the corruption code", err)
			}
		})
	}
}

func TestVerifyChecksTheHead(t *testing.T) {
	t.Parallel()
	c := chain(t, 5)
	if err := verify(c, 5, c[4].Hash); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	var te *audit.TamperError
	if err := verify(c[:4], 5, c[4].Hash); !errors.As(err, &te) || te.Seq != 5 || te.Problem != audit.Removed {
		t.Fatalf("cut tail: %v, want entry 5 removed", err)
	}
	if err := verify(c, 4, c[3].Hash); !errors.As(err, &te) || te.Seq != 5 || te.Problem != audit.Inserted {
		t.Fatalf("entry after head: %v, want entry 5 inserted", err)
	}
	if err := verify(nil, 0, audit.Genesis); err != nil {
		t.Fatalf("empty chain: %v", err)
	}
}

func TestSealCoversEveryField(t *testing.T) {
	t.Parallel()
	base := chain(t, 1)[0]
	mutations := map[string]func(*audit.Entry){
		"time":     func(e *audit.Entry) { e.Time = e.Time.Add(time.Microsecond) },
		"kind":     func(e *audit.Entry) { e.Kind += "x" },
		"subject":  func(e *audit.Entry) { e.Subject += "x" },
		"actor":    func(e *audit.Entry) { e.Actor += "x" },
		"host":     func(e *audit.Entry) { e.Host += "x" },
		"version":  func(e *audit.Entry) { e.Version += "x" },
		"revision": func(e *audit.Entry) { e.Revision += "x" },
		"command":  func(e *audit.Entry) { e.Command += "x" },
		"attrs":    func(e *audit.Entry) { e.Attrs = map[string]string{"a": "b"} },
		"counts":   func(e *audit.Entry) { e.Counts = map[string]int64{"i": 1} },
		"message":  func(e *audit.Entry) { e.Message += "x" },
		"link":     func(e *audit.Entry) { e.PrevHash = base.Hash },
	}
	for name, mutate := range mutations {
		e := base
		mutate(&e)
		if err := verify([]audit.Entry{e}, 1, base.Hash); err == nil {
			t.Errorf("changing %s went undetected", name)
		}
	}
}

func TestMaskArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"backfill", "run", "--dsn", "postgres://app:hunter2@db/x", "job.yaml"},
			"backfill run --dsn postgres://app:***@db/x job.yaml"},
		{[]string{"--dsn=host=db password=hunter2 user=app"}, "--dsn=host=db password=*** user=app"},
		{[]string{"--param", "api_token=abc", "--param", "cutoff=2024-01-01"}, "--param api_token=*** --param cutoff=2024-01-01"},
		{[]string{"--param=pin=1234"}, "--param=pin=***"},
		{[]string{"--password", "hunter2", "--actor", "alice"}, "--password *** --actor alice"},
	}
	for _, tt := range tests {
		if got := audit.MaskArgs(tt.args, []string{"pin"}); got != tt.want {
			t.Errorf("MaskArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
	got := audit.MaskParams(map[string]string{"pin": "1", "client_secret": "s", "n": "2"}, []string{"pin"})
	if got["pin"] != "***" || got["client_secret"] != "***" || got["n"] != "2" {
		t.Errorf("MaskParams = %v", got)
	}
}

func ExampleVerifier() {
	prev := audit.Genesis
	var entries []audit.Entry
	for i, kind := range []string{"backfill.run.started", "backfill.run.finished"} {
		e := audit.Entry{Seq: int64(i + 1), Kind: kind, Subject: "run-1", Origin: audit.Origin{Actor: "alice"}}
		e.Seal(prev)
		prev = e.Hash
		entries = append(entries, e)
	}
	entries[0].Actor = "mallory" // tamper

	v := audit.NewVerifier()
	for i := range entries {
		if err := v.Add(&entries[i]); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output: audit: ledger tampered: entry 1 altered: its content no longer matches its hash
}

// FuzzParseBody: a stored body decodes or fails, never panics, and what
// decodes hashes the same after a round trip.
func FuzzParseBody(f *testing.F) {
	e := chain(&testing.T{}, 1)[0]
	f.Add(e.Body())
	f.Add([]byte(`{"time":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got audit.Entry
		if err := audit.ParseBody(b, &got); err != nil {
			return
		}
		again := got
		if err := audit.ParseBody(got.Body(), &again); err != nil || string(again.Body()) != string(got.Body()) {
			t.Fatalf("body does not round-trip: %v", err)
		}
	})
}
