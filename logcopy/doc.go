// Package logcopy copies a store's whole log into another store, keeping
// every record's position, id, stream version, recorded-at time, metadata
// and batch, deletes included as the delete records they are; and checks
// that two logs hold the same records.
//
// A copy is resumable: it starts after the target's last position, once it
// has checked that the target holds exactly the source's records up to
// there (a target that is empty, or a prefix of the source). It never
// duplicates a record, because each import takes the target's next
// positions only if they are still free (rewind.LogImporter). A target that
// holds anything else — another log, or more than the source — is refused
// before anything is written.
//
// Verify compares the two logs record by record over a range and names the
// first position where they differ; each side's digest (SHA-256 over the
// records' canonical form) and count summarise the range.
package logcopy
