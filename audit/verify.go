package audit

import "fmt"

// Stored is an entry as a backend keeps it: its position (the sequence
// number the backend files it under), the bytes its hash covers, and its
// links. Verify works on these, never on a re-encoding of decoded fields,
// so that every stored byte counts.
type Stored struct {
	Seq      int64
	Body     []byte
	PrevHash string
	Hash     string
}

// Stored returns e as a backend keeps it, with its canonical body.
func (e *Entry) Stored() Stored {
	return Stored{Seq: e.Seq, Body: e.Body(), PrevHash: e.PrevHash, Hash: e.Hash}
}

// Verifier checks a chain entry by entry, in the order of their
// positions, keeping only the last two entries. Feed every entry to Add,
// then call End.
//
// It names the entry that was tampered with, not a neighbour: an entry
// whose bytes no longer match its hash is altered; an entry whose hash was
// rewritten is found through the next entry's link; a body holds its own
// sequence number, so an entry stored at another position is named as
// moved (two entries swapped, a copy of one put in another's place) and a
// gap hidden by renumbering the entries after it as removed. Entries
// written before bodies held their sequence number are verified byte for
// byte too, but there a removal hidden by renumbering is reported at the
// entry before the gap.
type Verifier struct {
	n        int64
	last     *Entry // the last entry accepted, Seq its position
	lastHash string // hash of the last entry
	prevHash string // hash of the entry before it
	withSeq  bool   // an entry whose body holds its sequence number was seen
	// pending: position expect held a later entry, renumbered; whether
	// entries were removed or moved shows in the next entry.
	pending *pending
	// broken: the entry at the next position says it is that entry but
	// does not link to the last one accepted; the entry after it tells
	// whether the last one's hash was rewritten or this one was forged.
	broken  *Stored
	anchors []Head
}

type pending struct {
	expect int64  // the position that holds another entry
	s      Stored // what it holds
	seq    int64  // the sequence number its body says
}

// NewVerifier returns a verifier for a chain that starts at Genesis.
func NewVerifier() *Verifier { return &Verifier{lastHash: Genesis} }

// Expect makes the verifier check that entry h.Seq has hash h.Hash: a
// head recorded outside the ledger earlier, which catches a ledger
// rewritten consistently (hashes and head) from any entry up to it, or
// cut short of it. Call it before Add.
func (v *Verifier) Expect(h Head) { v.anchors = append(v.anchors, h) }

// Count is how many entries Add accepted.
func (v *Verifier) Count() int64 { return v.n }

// Last is the last entry Add accepted, or nil.
func (v *Verifier) Last() *Entry { return v.last }

func (v *Verifier) next() int64 {
	if v.last == nil {
		return 1
	}
	return v.last.Seq + 1
}

// Add checks s against its own hash, its body and the entry before it.
// It returns a *TamperError at the first problem.
func (v *Verifier) Add(s Stored) error {
	expect := v.next()
	var e Entry
	withSeq, bad := false, ""
	if !canonicalHash(s.PrevHash) {
		// hashOf decodes the link, so another spelling of the same bytes
		// (upper-case hex) would hash the same and only fail to match the
		// entry before: the entry holding it is the one changed.
		bad = fmt.Sprintf("its link to the entry before (%.12s…) is not written as the ledger writes it "+
			"(64 lower-case hex digits)", s.PrevHash)
	} else if want, err := hashOf(s.PrevHash, s.Body); err != nil || want != s.Hash {
		bad = "its stored bytes no longer match its hash"
	} else if withSeq, err = parseBody(s.Body, &e); err != nil {
		bad = "its body is not a valid entry: " + err.Error()
	} else if !withSeq && v.withSeq {
		bad = "its body has the form of an earlier version, after entries of the current form"
	}
	seq := s.Seq // where the entry says it belongs
	if withSeq {
		seq = e.Seq
	}
	if v.broken != nil {
		return v.brokenLink(s)
	}
	switch {
	case v.pending != nil && bad != "":
		return v.pending.unresolved()
	case v.pending != nil:
		return v.pending.resolve(s, seq)
	case bad != "":
		return &TamperError{Seq: s.Seq, Problem: Altered, Reason: bad}
	}
	if s.PrevHash == v.lastHash {
		switch {
		case withSeq && seq != expect:
			return &TamperError{Seq: s.Seq, Problem: Inserted, Reason: fmt.Sprintf(
				"it says it is entry %d but follows entry %d: the ledger did not append it", seq, expect-1)}
		case s.Seq != expect:
			return &TamperError{Seq: expect, Problem: Moved, Reason: fmt.Sprintf(
				"entry %d is stored at position %d", expect, s.Seq)}
		}
		v.accept(&e, s, withSeq)
		return v.checkAnchors()
	}
	switch {
	case v.last != nil && s.PrevHash == v.prevHash:
		return &TamperError{Seq: v.last.Seq, Problem: Inserted, Reason: fmt.Sprintf(
			"entry %d links to the entry before it, so entry %d was not in the chain", s.Seq, v.last.Seq)}
	case seq > expect && s.Seq < seq:
		v.pending = &pending{expect: expect, s: s, seq: seq}
		return nil
	case seq > expect:
		return &TamperError{Seq: expect, Problem: Removed, Reason: fmt.Sprintf(
			"entries %d to %d are missing: entry %d links to an entry that is no longer there", expect, seq-1, seq)}
	case seq < expect:
		return &TamperError{Seq: s.Seq, Problem: Moved, Reason: fmt.Sprintf(
			"position %d holds entry %d (moved or copied here)", s.Seq, seq)}
	case v.last != nil:
		v.broken = &s
		return nil
	}
	return &TamperError{Seq: s.Seq, Problem: Altered, Reason: "the first entry does not start the chain"}
}

// brokenLink decides, from the entry after it (next), which of the last
// entry accepted and the entry v.broken, which does not link to it, was
// changed: if next links to v.broken, the chain went on from v.broken as
// it was written, so the last entry's hash was rewritten (or, in entries
// of the earlier form, entries before v.broken were removed and the rest
// renumbered); otherwise v.broken links to neither neighbour: it was
// replaced by an entry that hashes over a link of its own (forged, or
// copied from another ledger).
func (v *Verifier) brokenLink(next Stored) error {
	if next.PrevHash == v.broken.Hash {
		return v.rewritten()
	}
	return v.forged("the next entry does not link to it either")
}

func (v *Verifier) rewritten() error {
	return &TamperError{Seq: v.last.Seq, Problem: Altered, Reason: fmt.Sprintf(
		"its hash was rewritten: entry %d still records the original hash %.12s…", v.broken.Seq, v.broken.PrevHash)}
}

func (v *Verifier) forged(why string) error {
	return &TamperError{Seq: v.broken.Seq, Problem: Altered, Reason: fmt.Sprintf(
		"it does not link to entry %d (it records %.12s…, entry %d has %.12s…) and %s: it was replaced or forged",
		v.last.Seq, v.broken.PrevHash, v.last.Seq, v.lastHash, why)}
}

func (v *Verifier) accept(e *Entry, s Stored, withSeq bool) {
	e.Seq, e.PrevHash, e.Hash = s.Seq, s.PrevHash, s.Hash
	v.last, v.prevHash, v.lastHash = e, v.lastHash, s.Hash
	v.withSeq = v.withSeq || withSeq
	v.n++
}

// checkAnchors checks the entry just accepted against the expected heads.
func (v *Verifier) checkAnchors() error {
	for _, h := range v.anchors {
		if h.Seq == v.last.Seq && h.Hash != v.last.Hash {
			return &TamperError{Seq: h.Seq, Problem: Altered, Reason: fmt.Sprintf(
				"it no longer has the hash recorded outside the ledger (%.12s…, now %.12s…): "+
					"the ledger was rewritten from this entry or an earlier one, hashes and head included", h.Hash, v.last.Hash)}
		}
	}
	return nil
}

// resolve decides, from the entry at the next position, what happened at
// a position that held a later entry.
func (p *pending) resolve(next Stored, seq int64) error {
	switch {
	case seq == p.expect:
		return &TamperError{Seq: p.expect, Problem: Moved, Reason: fmt.Sprintf(
			"entries %d and %d were swapped: entry %d is stored at position %d, entry %d at position %d",
			p.expect, p.seq, p.expect, next.Seq, p.seq, p.s.Seq)}
	case seq == p.seq+1 && next.PrevHash == p.s.Hash:
		return p.removed()
	}
	return p.unresolved()
}

func (p *pending) removed() error {
	return &TamperError{Seq: p.expect, Problem: Removed, Reason: fmt.Sprintf(
		"entries %d to %d are missing, and the entries after them were renumbered to hide the gap (entry %d is stored as %d)",
		p.expect, p.seq-1, p.seq, p.s.Seq)}
}

func (p *pending) unresolved() error {
	return &TamperError{Seq: p.expect, Problem: Moved, Reason: fmt.Sprintf(
		"position %d holds entry %d: entry %d was removed or moved", p.s.Seq, p.seq, p.expect)}
}

// End checks the chain's end against the head the backend recorded apart
// from the entries (0 and Genesis when nothing was appended), and against
// the heads given to Expect.
func (v *Verifier) End(headSeq int64, headHash string) error {
	if v.broken != nil {
		// The last entry: the head, kept apart from the entries, tells as
		// the next entry would. A head moved to it leaves the two
		// readings open; the earlier entry is named.
		if headSeq == v.broken.Seq && headHash == v.broken.Hash {
			return v.rewritten()
		}
		return v.forged("the ledger's head does not record it")
	}
	if v.pending != nil {
		return v.pending.removed()
	}
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
	for _, h := range v.anchors {
		if h.Seq > lastSeq {
			return &TamperError{Seq: lastSeq + 1, Problem: Removed, Reason: fmt.Sprintf(
				"the ledger ends at entry %d, but entry %d (%.12s…) was recorded outside the ledger: "+
					"entries were cut off the end and the head rewritten", lastSeq, h.Seq, h.Hash)}
		}
	}
	return nil
}

// canonicalHash reports whether h is a hash as the ledger writes it: 64
// lower-case hex digits.
func canonicalHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
