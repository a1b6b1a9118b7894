// Package audit is rewind's tamper-evident ledger: an append-only list of
// entries saying who did what, when, with which build of rewind and which
// command line. Backfill runs record every step in it; the store will record
// its administrative operations.
//
// # Guarantees
//
// Entries are chained: each one holds the hash of the entry before it, and
// its own hash covers that link and everything it says (see Seal). Changing
// an entry's content changes its hash; rewriting the hash breaks the next
// entry's link; removing an entry leaves a gap in the sequence numbers and a
// link to a hash that is no longer there; inserting one leaves a link that
// skips it. Verify walks the chain and names the first entry where any of
// this happened. The ledger also keeps its head (the last sequence number
// and hash) apart from the entries, so cutting entries off the end is
// detected too.
//
// The chain makes tampering evident, not impossible: someone who can
// rewrite every entry after the one they changed, and the head, can forge a
// consistent ledger. Record the head that `rewind audit verify` prints
// somewhere else (a ticket, a commit) to pin the history up to it.
//
// Secrets never enter the ledger: MaskArgs and MaskParams replace passwords,
// tokens and parameters declared secret with "***" before an entry is built.
//
// Package auditpg stores the ledger in PostgreSQL, where the database itself
// rejects updates and deletes of entries.
package audit
