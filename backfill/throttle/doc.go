// Package throttle keeps a backfill from hurting the database it writes to.
//
// A Throttler combines Signals — readings of the database's health or of
// the operator's wishes — and a maximum rate in rows per second. Before
// each chunk a worker calls Wait: it returns at once while every signal is
// below its max, blocks (reading the signals again every Config.Interval)
// while one is at or over its max, and returns a *PauseError naming the
// signal when one crosses its critical threshold or cannot be read. That
// last rule is the throttle's one promise: it fails closed. A signal that
// cannot say the database is healthy pauses the work, as Spirit does,
// rather than letting it run blind.
//
// A Sizer picks each chunk's size so that a chunk takes about a target time
// (500 ms by default, as Spirit and pt-online-schema-change do): an
// exponentially weighted average of the recent chunks' rows per second,
// shrunk at once when a chunk takes more than five times the target,
// within hard bounds. A job that fixes its chunk size keeps it.
//
// The built-in signals, one file each: ReplicationLag (pg_stat_replication
// on the target) and HeartbeatLag (a heartbeat table read on a replica, for
// cascaded replicas), Load (active backends, lock waits and the oldest
// transaction, from pg_stat_activity), Query (a custom SQL query returning
// one number), HTTP (an endpoint's status and number) and File (a flag
// file). Spec is the declarative form a job file's throttle: block and the
// command line flags build.
package throttle
