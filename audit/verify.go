package audit

import "fmt"

// Verifier checks a chain entry by entry, in sequence order, keeping only
// the last two entries. Feed every entry to Add, then call End.
type Verifier struct {
	n        int64
	last     *Entry
	lastHash string // hash of the last entry
	prevHash string // hash of the entry before it
}

// NewVerifier returns a verifier for a chain that starts at Genesis.
func NewVerifier() *Verifier { return &Verifier{lastHash: Genesis} }

// Count is how many entries Add accepted.
func (v *Verifier) Count() int64 { return v.n }

// Last is the last entry Add accepted, or nil.
func (v *Verifier) Last() *Entry { return v.last }

// Add checks e against its own hash and the entry before it. It returns a
// *TamperError at the first problem.
func (v *Verifier) Add(e *Entry) error {
	want, err := hashOf(e.PrevHash, e.Body())
	if err != nil || want != e.Hash {
		return &TamperError{Seq: e.Seq, Problem: Altered, Reason: "its content no longer matches its hash"}
	}
	expect := int64(1)
	if v.last != nil {
		expect = v.last.Seq + 1
	}
	if e.PrevHash != v.lastHash {
		switch {
		case e.Seq > expect:
			return &TamperError{Seq: expect, Problem: Removed, Reason: fmt.Sprintf(
				"entries %d to %d are missing: entry %d links to an entry that is no longer there", expect, e.Seq-1, e.Seq)}
		case v.last != nil && e.PrevHash == v.prevHash:
			return &TamperError{Seq: v.last.Seq, Problem: Inserted, Reason: fmt.Sprintf(
				"entry %d links to the entry before it, so it was not in the chain", e.Seq)}
		case v.last != nil:
			return &TamperError{Seq: v.last.Seq, Problem: Altered, Reason: fmt.Sprintf(
				"its hash was rewritten: entry %d still records the original hash %.12s…", e.Seq, e.PrevHash)}
		default:
			return &TamperError{Seq: e.Seq, Problem: Altered, Reason: "the first entry does not start the chain"}
		}
	}
	if e.Seq != expect {
		if e.Seq < expect {
			return &TamperError{Seq: e.Seq, Problem: Inserted, Reason: fmt.Sprintf("its sequence number repeats or goes back (expected %d)", expect)}
		}
		return &TamperError{Seq: e.Seq, Problem: Altered, Reason: fmt.Sprintf("it is numbered %d but follows entry %d", e.Seq, expect-1)}
	}
	c := *e
	v.last, v.prevHash, v.lastHash = &c, v.lastHash, e.Hash
	v.n++
	return nil
}

// End checks the chain's end against the head the backend recorded apart
// from the entries (0 and Genesis when nothing was appended).
func (v *Verifier) End(headSeq int64, headHash string) error {
	var lastSeq int64
	if v.last != nil {
		lastSeq = v.last.Seq
	}
	switch {
	case headSeq > lastSeq:
		return &TamperError{Seq: lastSeq + 1, Problem: Removed, Reason: fmt.Sprintf(
			"the ledger's head records %d entries but the chain ends at entry %d", headSeq, lastSeq)}
	case headSeq < lastSeq:
		return &TamperError{Seq: headSeq + 1, Problem: Inserted, Reason: fmt.Sprintf(
			"the chain goes on after the ledger's head (entry %d)", headSeq)}
	case headHash != v.lastHash:
		return &TamperError{Seq: lastSeq, Problem: Altered, Reason: "the ledger's head records another hash for it"}
	}
	return nil
}
