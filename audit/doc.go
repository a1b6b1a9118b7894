// Package audit is rewind's tamper-evident ledger: an append-only list of
// entries saying who did what, when, with which build of rewind and which
// command line. Backfill runs record every step in it; the store will record
// its administrative operations.
//
// # Guarantees
//
// Entries are chained: each one holds the hash of the entry before it, and
// its own hash covers that link and its body, the canonical bytes of
// everything it says, its own sequence number included (see Seal). Backends
// store the body verbatim, and the Verifier hashes the stored bytes, so a
// change to any byte is found, even one that decodes to the same entry.
// Rewriting the hash breaks the next entry's link; removing an entry leaves
// a gap, or bodies whose numbers disagree with their positions when the
// rest was renumbered; inserting one leaves a link that skips it. Verify
// walks the chain and names the first entry where any of this happened,
// the entry that was changed rather than its neighbour. The ledger also
// keeps its head (the last sequence number and hash) apart from the
// entries, so cutting entries off the end is detected too.
//
// The chain makes tampering evident, not impossible: someone who can
// rewrite every entry after the one they changed, and the head, can forge a
// consistent ledger, and one who can cut the tail and move the head back
// leaves a consistent shorter one. Record the head (Head, printed by
// `rewind audit head`) outside the database and give it back to the
// Verifier (Expect, `rewind audit verify --expect-head`) to pin the history
// up to it. The ledger proves entries were not changed after they were
// written, not that they were true.
//
// Secrets never enter the ledger: MaskArgs and MaskParams replace passwords,
// tokens and parameters declared secret with "***" before an entry is built,
// and backends pass every entry through MaskEntry when they append it, so
// that the password of a connection string, in any form MaskText knows,
// reaches the ledger in no field.
//
// Package auditpg stores the ledger in PostgreSQL, where the database itself
// rejects updates and deletes of entries.
package audit
