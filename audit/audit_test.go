package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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

// stored returns the chain as a backend keeps it.
func stored(c []audit.Entry) []audit.Stored {
	out := make([]audit.Stored, len(c))
	for i := range c {
		out[i] = c[i].Stored()
	}
	return out
}

func verify(entries []audit.Stored, headSeq int64, headHash string, anchors ...audit.Head) error {
	v := audit.NewVerifier()
	for _, a := range anchors {
		v.Expect(a)
	}
	for i := range entries {
		if err := v.Add(entries[i]); err != nil {
			return err
		}
	}
	return v.End(headSeq, headHash)
}

// renumber moves entries from index i on to position start, start+1…, as
// an UPDATE of a sequence number column does (the bodies stay).
func renumber(s []audit.Stored, i int, start int64) []audit.Stored {
	for j := i; j < len(s); j++ {
		s[j].Seq = start + int64(j-i)
	}
	return s
}

func replace(s []audit.Stored, i int, old, new string) []audit.Stored {
	s[i].Body = []byte(strings.Replace(string(s[i].Body), old, new, 1))
	return s
}

func TestVerifyNamesTheTamperedEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  func([]audit.Stored, []audit.Entry) []audit.Stored
		seq     int64
		problem audit.Problem
	}{
		{"content changed", func(s []audit.Stored, _ []audit.Entry) []audit.Stored { return replace(s, 3, "alice", "mallory") }, 4, audit.Altered},
		{"key case changed", func(s []audit.Stored, _ []audit.Entry) []audit.Stored { return replace(s, 3, `"kind"`, `"Kind"`) }, 4, audit.Altered},
		{"field added", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			return replace(s, 3, `"seq":4,`, `"seq":4,"x":1,`)
		}, 4, audit.Altered},
		{"space inserted", func(s []audit.Stored, _ []audit.Entry) []audit.Stored { return replace(s, 3, `,"kind"`, `, "kind"`) }, 4, audit.Altered},
		{"letter escaped", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			return replace(s, 3, `"alice"`, `"\u0061lice"`)
		}, 4, audit.Altered},
		{"content changed and rehashed", func(s []audit.Stored, c []audit.Entry) []audit.Stored {
			c[3].Actor = "mallory"
			c[3].Seal(c[3].PrevHash)
			s[3] = c[3].Stored()
			return s
		}, 4, audit.Altered},
		// Hashed over a link of its own: neither neighbour links to it, so
		// it is named, not the entry before it.
		{"entry forged with a link of its own", func(s []audit.Stored, c []audit.Entry) []audit.Stored {
			c[3].Actor = "mallory"
			c[3].Seal(strings.Repeat("ab", 32))
			s[3] = c[3].Stored()
			return s
		}, 4, audit.Altered},
		{"entry removed", func(s []audit.Stored, _ []audit.Entry) []audit.Stored { return append(s[:4:4], s[5:]...) }, 5, audit.Removed},
		{"entry removed and the rest renumbered", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			return renumber(append(s[:4:4], s[5:]...), 4, 5)
		}, 5, audit.Removed},
		{"two entries removed and the rest renumbered", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			return renumber(append(s[:2:2], s[4:]...), 2, 3)
		}, 3, audit.Removed},
		{"last but one removed, the last renumbered", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			return renumber(append(s[:6:6], s[7:]...), 6, 7)
		}, 7, audit.Removed},
		{"first entry removed", func(s []audit.Stored, _ []audit.Entry) []audit.Stored { return s[1:] }, 1, audit.Removed},
		{"two entries swapped", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			s[3], s[4] = s[4], s[3]
			return renumber(s, 3, 4)
		}, 4, audit.Moved},
		{"two distant entries swapped", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			s[2], s[5] = s[5], s[2]
			return renumber(s, 2, 3)
		}, 3, audit.Moved},
		{"an entry copied over another", func(s []audit.Stored, _ []audit.Entry) []audit.Stored {
			s[5] = s[1]
			s[5].Seq = 6
			return s
		}, 6, audit.Moved},
		{"entry inserted and the rest renumbered", func(s []audit.Stored, c []audit.Entry) []audit.Stored {
			forged := audit.Entry{Seq: 3, Time: c[2].Time, Kind: "test.step", Origin: audit.Origin{Actor: "mallory"}}
			forged.Seal(c[1].Hash)
			out := append(append(append([]audit.Stored{}, s[:2]...), forged.Stored()), s[2:]...)
			return renumber(out, 3, 4)
		}, 3, audit.Inserted},
		{"entry numbered as another appended", func(s []audit.Stored, c []audit.Entry) []audit.Stored {
			forged := c[7]
			forged.Seal(c[7].Hash) // says it is entry 8 again
			f := forged.Stored()
			f.Seq = 9
			return append(s, f)
		}, 9, audit.Inserted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := chain(t, 8)
			last := c[len(c)-1]
			err := verify(tt.tamper(stored(c), c), last.Seq, last.Hash)
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
	c := stored(chain(t, 5))
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

// A rewritten tail (entries and head recomputed) verifies on its own; a
// head recorded outside the ledger earlier catches it, and a cut tail.
func TestVerifyChecksExternalAnchors(t *testing.T) {
	t.Parallel()
	orig := chain(t, 8)
	anchor := audit.Head{Seq: 6, Hash: orig[5].Hash}
	if err := verify(stored(orig), 8, orig[7].Hash, anchor); err != nil {
		t.Fatalf("intact chain with its anchor: %v", err)
	}
	forged := chain(t, 8)
	for i := 4; i < 8; i++ { // rewrite entries 5…8 consistently
		forged[i].Actor = "mallory"
		forged[i].Seal(forged[i-1].Hash)
	}
	if err := verify(stored(forged), 8, forged[7].Hash); err != nil {
		t.Fatalf("a consistent rewrite is not detectable without an anchor, yet verify said %v", err)
	}
	var te *audit.TamperError
	if err := verify(stored(forged), 8, forged[7].Hash, anchor); !errors.As(err, &te) || te.Seq != 6 || te.Problem != audit.Altered {
		t.Fatalf("rewritten tail against the anchor: %v, want entry 6 altered", err)
	}
	cut := stored(orig[:5])
	if err := verify(cut, 5, orig[4].Hash, anchor); !errors.As(err, &te) || te.Seq != 6 || te.Problem != audit.Removed {
		t.Fatalf("cut tail with the head rewritten, against the anchor: %v, want entry 6 removed", err)
	}
	for _, bad := range []string{"", "6", "0:" + orig[0].Hash, "6:xyz", "x:" + orig[0].Hash} {
		if _, err := audit.ParseHead(bad); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("ParseHead(%q) = %v, want an invalid argument", bad, err)
		}
	}
	if h, err := audit.ParseHead(anchor.String()); err != nil || h != anchor {
		t.Errorf("ParseHead(%q) = %v, %v", anchor, h, err)
	}
}

// Entries of an earlier version (bodies without their sequence number) are
// verified byte for byte; a chain may go on in the current form, not back.
func TestVerifyEntriesOfAnEarlierVersion(t *testing.T) {
	t.Parallel()
	old := func(e audit.Entry) []byte { // the body as the earlier version wrote it
		b := string(e.Body())
		return []byte("{" + b[strings.Index(b, `"time"`):])
	}
	c := chain(t, 6)
	s := make([]audit.Stored, len(c))
	prev := audit.Genesis
	for i := range c {
		body := c[i].Body()
		if i < 3 {
			body = old(c[i])
		}
		h := sha256.Sum256(append(must(hex.DecodeString(prev)), body...))
		s[i] = audit.Stored{Seq: c[i].Seq, Body: body, PrevHash: prev, Hash: hex.EncodeToString(h[:])}
		prev = s[i].Hash
	}
	if err := verify(s, 6, prev); err != nil {
		t.Fatalf("earlier entries, then current ones: %v", err)
	}
	spaced := append([]audit.Stored{}, s...)
	spaced[1].Body = []byte(strings.Replace(string(s[1].Body), `"kind":`, `"kind": `, 1))
	var te *audit.TamperError
	if err := verify(spaced, 6, prev); !errors.As(err, &te) || te.Seq != 2 || te.Problem != audit.Altered {
		t.Fatalf("a space in an entry of the earlier version: %v, want entry 2 altered", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
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
		"seq":      func(e *audit.Entry) { e.Seq = 2 },
		"link":     func(e *audit.Entry) { e.PrevHash = base.Hash },
	}
	for name, mutate := range mutations {
		e := base
		mutate(&e)
		if err := verify([]audit.Stored{e.Stored()}, 1, base.Hash); err == nil {
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
	// Every way libpq lets a password be written.
	for dsn, want := range map[string]string{
		"host=db password = hunter2 user=app":                "host=db password = *** user=app",
		"host=db password='hunter 2' user=app":               "host=db password=*** user=app",
		`host=db password='hun\'ter 2' user=app`:             "host=db password=*** user=app",
		"host=db PASSWORD=hunter2":                           "host=db PASSWORD=***",
		"host=db sslpassword=hunter2 password=x":             "host=db sslpassword=*** password=***",
		"postgres://app:hun@ter2@db/x":                       "postgres://app:***@db/x",
		"postgres://app@db/x?password=hunter2&a=b":           "postgres://app@db/x?password=***&a=b",
		"postgresql://app:hunter2@db:5432/x?sslmode=disable": "postgresql://app:***@db:5432/x?sslmode=disable",
		// Issue 11, outside test round 2 (4b): libpq's escaped space.
		`host=db password=hun\ ter2 user=app`:     "host=db password=*** user=app",
		`host=db password=hun\ter2\ \'x user=app`: "host=db password=*** user=app",
		"postgres://postgres:postgres@db/x":       "postgres://postgres:***@db/x",
	} {
		if got := audit.MaskDSN(dsn); got != want || strings.Contains(got, "hunter") || strings.Contains(got, "ter2") {
			t.Errorf("MaskDSN(%q) = %q, want %q", dsn, got, want)
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
		if err := v.Add(entries[i].Stored()); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output: audit: ledger tampered: entry 1 altered: its stored bytes no longer match its hash
}

// FuzzParseBody: a stored body decodes or fails, never panics, and a body
// in the current form decodes only if it is exactly what Body writes.
func FuzzParseBody(f *testing.F) {
	e := chain(&testing.T{}, 1)[0]
	f.Add(e.Body())
	f.Add([]byte(`{"seq":1,"time":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got audit.Entry
		if err := audit.ParseBody(b, &got); err != nil {
			return
		}
		if bytes.HasPrefix(b, []byte(`{"seq":`)) && !bytes.Equal(got.Body(), b) {
			t.Fatalf("accepted %q, which is not what Body writes for it: %q", b, got.Body())
		}
	})
}
