// Package consumer runs durable consumer groups over any rewind.Store: the
// event bus on top of the log.
//
// A group has a name, a filter and a start. Its members (Engine.Join)
// compete for its events: Member.Fetch hands out deliveries, each with a
// DeliveryID of its own, and the member acks, naks (to have it again after
// a delay or the group's backoff step), reports progress on, or terms (parks)
// each by that id — so a server can host the engine for remote members.
// Consume runs a Handler over a member's deliveries; package
// consumer/middleware holds handler middleware, package consumer/pgtx the
// transactional consumer for PostgreSQL sinks.
//
// # Guarantees
//
// An ack means the event is done for the group: once the ack is committed
// the group never delivers the event again (unless a reset asks for it).
// A delivery not acked within the ack wait, nak'ed, or held by a member
// that leaves is delivered again (to any member) after the group's backoff
// step, until max deliveries: then it is parked, with its reason, last
// error and attempts, until a replay hands it back (once: failing again
// parks it again) or a purge removes it.
//
// The group's state is kept in the store, in its state stream, by group
// commit: every CommitInterval one record of what changed, and now and
// then a compacted snapshot. After a crash the group delivers again
// exactly the events that were not acked, and those acked within the last
// commit interval; nothing else, and no event is lost. At-most-once groups
// commit before handing events out, so nothing is delivered twice.
//
// With OrderBy, the events of one key (a stream, or a metadata field) are
// delivered in order, one at a time, different keys in parallel, also
// under redelivery and member churn.
//
// Nothing is buffered without bound: a group holds at most MaxPending
// events in memory and reads the log as room frees up; MaxAckPending and
// each member's MaxAckPending cap the deliveries not yet acked; a group
// that cannot move says why in its Status. Lag (GroupInfo) is kept as the
// group works, never computed by scanning.
//
// A damaged record of the log does not fail a group: it delivers every
// event before it (status StatusDamaged meanwhile), then its fetches fail
// with ErrLogDamaged (code corruption) until it is reset past the damage.
//
// See docs/consumer.md for the whole design and its limits.
package consumer
