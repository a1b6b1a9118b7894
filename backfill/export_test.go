package backfill

// LegacyChecksums makes the runner start runs as versions before
// per-column checksums did: their set jobs' rows hashed whole, and no
// "checksum" in the run's session.
func LegacyChecksums(c *Config) { c.legacyChecksums = true }
