package backfill

// LegacyChecksums makes the runner start runs as versions before
// per-column checksums did: their set jobs' rows hashed whole, and no
// "checksum" in the run's session.
func LegacyChecksums(c *Config) { c.legacyChecksums = true }

// FenceSQL and ControlFenceSQL are what a worker's chunk runs, in this
// order, before it commits: they lock the run's fencing token and its
// control record FOR SHARE.
const (
	FenceSQL        = fenceSQL
	ControlFenceSQL = controlFenceSQL
)
