package consumer

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// Defaults of GroupConfig and Config.
const (
	DefaultAckWait             = 30 * time.Second
	DefaultMaxDeliveries       = 5
	DefaultMaxAckPending       = 10_000
	DefaultMaxPending          = 20_000
	DefaultMemberMaxAckPending = 1000
	DefaultMaxParked           = 10_000
	DefaultReplayChunk         = 100
	DefaultCommitInterval      = 100 * time.Millisecond
	DefaultSnapshotEvery       = 256
	DefaultTickInterval        = 50 * time.Millisecond
	maxLastError               = 1 << 10
	maxGroupName               = 128
	maxLimit                   = 1_000_000
	maxAckWait                 = 24 * time.Hour
	maxBackoffSteps            = 32
	maxCommitInterval          = 10 * time.Second
	unlimitedDeliveries        = -1
	stateStreamPrefix          = "_rewind.group."
)

// DefaultBackoff is the redelivery schedule of a group that sets none: the
// delay before the 1st, 2nd, 3rd… redelivery, the last repeating.
var DefaultBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}

// SystemStreamPrefix starts the names of the streams the engine keeps its
// groups' state in. Groups never deliver events of these streams.
const SystemStreamPrefix = "_rewind."

// StateStream returns the name of the stream group keeps its state in
// ("_rewind.group." + group). A server's scopes name the group by it.
func StateStream(group string) string { return stateStreamPrefix + group }

// Mode is a group's delivery guarantee.
type Mode string

// The delivery modes.
const (
	// AtLeastOnce delivers each event until a member acks it (or it is
	// parked). A crash can deliver an event again. The default.
	AtLeastOnce Mode = "at-least-once"
	// AtMostOnce marks each event done, durably, before handing it out: a
	// member that fails loses it, nothing is delivered twice.
	AtMostOnce Mode = "at-most-once"
	// EffectivelyOnce delivers as AtLeastOnce; members apply each event
	// once by deduplicating (middleware.Dedup) or by committing their
	// progress with their writes (package pgtx).
	EffectivelyOnce Mode = "effectively-once"
)

// StartKind says where a new group starts reading the log.
type StartKind string

// Where a group can start.
const (
	StartBeginning StartKind = "beginning"
	StartEnd       StartKind = "end"
	StartPosition  StartKind = "position"
	StartTime      StartKind = "time"
)

// Start says where a new group starts: its first event is the first one
// after Position (StartPosition), at or after Time (StartTime), the first
// of the log (StartBeginning, the default) or the first appended after
// the group was created (StartEnd).
type Start struct {
	Kind     StartKind       `json:"kind,omitempty"`
	Position rewind.Position `json:"position,omitempty"`
	Time     time.Time       `json:"time,omitzero"`
}

// End bounds a group: it delivers the events up to its end and none
// appended later, and then says it is complete. Give a position (the last
// one delivered, inclusive) or a time (the last event delivered is the
// last one recorded at or before it), not both. The end is resolved to a
// position once, when the group is created, against the log as it stands
// then; the zero End leaves the group unbounded.
type End struct {
	Position rewind.Position `json:"position,omitempty"`
	Time     time.Time       `json:"time,omitzero"`
}

// IsZero reports whether the end is unset (an unbounded group).
func (e End) IsZero() bool { return e.Position == 0 && e.Time.IsZero() }

// String returns the end as a position or an RFC 3339 time ("" when unset).
func (e End) String() string {
	switch {
	case !e.Time.IsZero():
		return e.Time.Format(time.RFC3339Nano)
	case e.Position != 0:
		return e.Position.String()
	}
	return ""
}

// GroupConfig configures a consumer group. The zero value of every field
// but Name means its default.
type GroupConfig struct {
	// Name names the group: 1 to 128 letters, digits, '.', '_' or '-'.
	Name string `json:"name"`
	// Filter selects the events the group delivers: a stream prefix
	// (category) and event types. Defaults to every event. It cannot be
	// changed once the group exists.
	Filter rewind.Filter `json:"filter"`
	// Start says where the group starts. Defaults to the beginning.
	Start Start `json:"start"`
	// End bounds the group: with it the group delivers exactly the
	// events from Start through End that its filter selects, then is
	// complete (StatusComplete). Defaults to none: the group follows the
	// log for ever.
	End End `json:"end,omitzero"`
	// Mode is the delivery guarantee. Defaults to AtLeastOnce.
	Mode Mode `json:"mode,omitempty"`
	// AckWait is how long a member has to ack a delivery before it is
	// redelivered (InProgress extends it). Defaults to 30 s.
	AckWait time.Duration `json:"ack_wait,omitempty"`
	// MaxDeliveries is how many times an event is delivered before it is
	// parked. Defaults to 5; -1 means without limit.
	MaxDeliveries int `json:"max_deliveries,omitempty"`
	// Backoff is the delay before each redelivery, after a nak without a
	// delay of its own and after an ack wait expired alike: the n-th entry
	// before the n-th redelivery, the last one repeating. Defaults to
	// DefaultBackoff; a single 0 redelivers at once.
	Backoff []time.Duration `json:"backoff,omitempty"`
	// MaxAckPending caps the deliveries of the whole group not yet acked.
	// Defaults to 10,000.
	MaxAckPending int `json:"max_ack_pending,omitempty"`
	// MaxPending caps the events the group holds in memory: read from the
	// log and not yet acked or parked (in flight, ready, waiting for
	// their key or for a redelivery). The group reads no further while
	// it is full. Defaults to 20,000, and is at least MaxAckPending.
	MaxPending int `json:"max_pending,omitempty"`
	// MemberMaxAckPending caps the deliveries of one member not yet
	// acked. Defaults to 1,000.
	MemberMaxAckPending int `json:"member_max_ack_pending,omitempty"`
	// OrderBy makes the group deliver the events of one key in order, one
	// at a time, different keys in parallel: "stream" keys events by their
	// stream, "metadata:NAME" by the metadata field NAME (events without
	// it each go alone). Empty delivers without order.
	OrderBy string `json:"order_by,omitempty"`
	// Priority names event types delivered ahead of the other events the
	// group holds in memory.
	Priority []string `json:"priority,omitempty"`
	// MaxParked caps the parked events of the group. While it is full an
	// event that should be parked is redelivered after the last backoff
	// step instead, and the group's status says so. Defaults to 10,000.
	MaxParked int `json:"max_parked,omitempty"`
	// ReplayChunk is how many parked events a replay hands back at a time:
	// the next ones follow as these are acked or parked again. Defaults
	// to 100.
	ReplayChunk int `json:"replay_chunk,omitempty"`
}

func (c *GroupConfig) withDefaults() GroupConfig {
	g := *c
	if g.Start.Kind == "" {
		g.Start.Kind = StartBeginning
	}
	if g.Mode == "" {
		g.Mode = AtLeastOnce
	}
	if g.AckWait == 0 {
		g.AckWait = DefaultAckWait
	}
	if g.MaxDeliveries == 0 {
		g.MaxDeliveries = DefaultMaxDeliveries
	}
	if g.Backoff == nil {
		g.Backoff = append([]time.Duration(nil), DefaultBackoff...)
	}
	if g.MaxAckPending == 0 {
		g.MaxAckPending = DefaultMaxAckPending
	}
	if g.MaxPending == 0 {
		g.MaxPending = max(DefaultMaxPending, g.MaxAckPending)
	}
	if g.MemberMaxAckPending == 0 {
		g.MemberMaxAckPending = DefaultMemberMaxAckPending
	}
	if g.MaxParked == 0 {
		g.MaxParked = DefaultMaxParked
	}
	if g.ReplayChunk == 0 {
		g.ReplayChunk = DefaultReplayChunk
	}
	return g
}

func bad(field string, v any, reason string) error {
	return &rewind.ValidationError{Field: field, Value: fmt.Sprint(v), Reason: reason}
}

func tooLarge(limit string, got, max int64, hint string) error {
	return &rewind.LimitError{Limit: limit, Max: max, Got: got, Hint: hint}
}

// Validate checks a configuration as CreateGroup does before it reads the
// log (an end beyond the log, or a start position after it, is found only
// there). Mistakes are *rewind.ValidationError or *rewind.LimitError.
func (c GroupConfig) Validate() error {
	d := c.withDefaults()
	return d.validate()
}

// validate checks a configuration with its defaults applied.
func (c *GroupConfig) validate() error {
	if err := ValidateGroupName(c.Name); err != nil {
		return err
	}
	if err := validateFilter(c.Filter); err != nil {
		return err
	}
	switch c.Start.Kind {
	case StartBeginning, StartEnd:
	case StartPosition:
	case StartTime:
		if c.Start.Time.IsZero() {
			return bad("start time", "", "must be set when the start is a time")
		}
	default:
		return bad("start", c.Start.Kind, `must be "beginning", "end", "position" or "time"`)
	}
	if c.Start.Kind != StartPosition && c.Start.Position != 0 {
		return bad("start position", c.Start.Position, `is only allowed with the start "position"`)
	}
	// As a position: a time under another kind (left out over the API:
	// the beginning) was ignored, and the group started elsewhere.
	if c.Start.Kind != StartTime && !c.Start.Time.IsZero() {
		return bad("start time", c.Start.Time.Format(time.RFC3339Nano), `is only allowed with the start "time"`)
	}
	if err := c.validateEnd(); err != nil {
		return err
	}
	switch c.Mode {
	case AtLeastOnce, AtMostOnce, EffectivelyOnce:
	default:
		return bad("mode", c.Mode, `must be "at-least-once", "at-most-once" or "effectively-once"`)
	}
	if c.AckWait < time.Millisecond || c.AckWait > maxAckWait {
		return bad("ack wait", c.AckWait, "must be between 1ms and 24h")
	}
	if c.MaxDeliveries < unlimitedDeliveries || c.MaxDeliveries > maxLimit {
		return bad("max deliveries", c.MaxDeliveries, "must be between 1 and 1000000, or -1 for no limit")
	}
	if len(c.Backoff) == 0 || len(c.Backoff) > maxBackoffSteps {
		return bad("backoff", c.Backoff, fmt.Sprintf("must have 1 to %d steps", maxBackoffSteps))
	}
	for _, d := range c.Backoff {
		if d < 0 || d > maxAckWait {
			return bad("backoff", c.Backoff, "each step must be between 0 and 24h")
		}
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if _, _, err := parseOrderBy(c.OrderBy); err != nil {
		return err
	}
	for _, t := range c.Priority {
		if t == "" {
			return bad("priority", "", "event types must not be empty")
		}
		// A type no event can have failed the group at its first read.
		if err := store.ValidateEventType(t); err != nil {
			return bad("priority", t, "is not an event type: "+err.Error())
		}
	}
	return nil
}

// validateEnd checks the end against itself and the start, without
// reading the log (CreateGroup checks it against the log).
func (c *GroupConfig) validateEnd() error {
	e := c.End
	switch {
	case e.IsZero():
		return nil
	case e.Position != 0 && !e.Time.IsZero():
		return bad("end", e.String()+" and "+e.Time.Format(time.RFC3339Nano), "give either a position or a time, not both")
	case c.Start.Kind == StartEnd:
		return bad("end", e.String(), `a bounded group cannot start at the end of the log: it would deliver nothing; `+
			`start at a position or a time`)
	case e.Position != 0 && c.Start.Kind == StartPosition && e.Position <= c.Start.Position:
		return bad("end", e.Position, fmt.Sprintf("must be after the start position %d (the group delivers the "+
			"events after its start position, through its end position)", c.Start.Position))
	case !e.Time.IsZero() && c.Start.Kind == StartTime && e.Time.Before(c.Start.Time):
		return bad("end", e.Time.Format(time.RFC3339Nano), "must not be before the start time "+
			c.Start.Time.Format(time.RFC3339Nano))
	}
	return nil
}

func (c *GroupConfig) validateLimits() error {
	limits := []struct {
		name string
		v    int
	}{
		{"max ack pending", c.MaxAckPending}, {"max pending", c.MaxPending},
		{"member max ack pending", c.MemberMaxAckPending}, {"max parked", c.MaxParked},
		{"replay chunk", c.ReplayChunk},
	}
	for _, l := range limits {
		if l.v < 1 {
			return bad(l.name, l.v, "must be at least 1")
		}
		if l.v > maxLimit {
			return tooLarge(l.name, int64(l.v), maxLimit, "events held in memory must stay bounded; lower it")
		}
	}
	if c.MaxPending < c.MaxAckPending {
		return bad("max pending", c.MaxPending, fmt.Sprintf("must be at least max ack pending (%d)", c.MaxAckPending))
	}
	return nil
}

func validateFilter(f rewind.Filter) error {
	if strings.HasPrefix(f.StreamPrefix, SystemStreamPrefix) {
		return bad("filter stream prefix", f.StreamPrefix, "names the engine's own streams, which groups never deliver")
	}
	if strings.ContainsFunc(f.StreamPrefix, func(r rune) bool { return r < ' ' }) {
		return bad("filter stream prefix", f.StreamPrefix, "must not contain control characters")
	}
	for _, t := range f.Types {
		if t == "" {
			return bad("filter types", "", "event types must not be empty")
		}
	}
	// The store's own rules: a filter it would refuse to read with, or a
	// prefix no stream name can start with, would leave the group failed
	// or idle for ever.
	return store.ValidateFilter(f)
}

// ValidateGroupName reports whether name can name a group.
func ValidateGroupName(name string) error {
	if name == "" {
		return bad("group name", name, "must not be empty")
	}
	if len(name) > maxGroupName {
		return bad("group name", name, fmt.Sprintf("must be at most %d bytes", maxGroupName))
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return bad("group name", name, "must hold only letters, digits, '.', '_' or '-'")
		}
	}
	return nil
}

// parseOrderBy returns whether the group is ordered and the metadata field
// keying it ("" keys by stream).
func parseOrderBy(s string) (ordered bool, field string, err error) {
	switch {
	case s == "":
		return false, "", nil
	case s == "stream":
		return true, "", nil
	case strings.HasPrefix(s, "metadata:") && len(s) > len("metadata:"):
		// A key no event can carry would order nothing, silently.
		if err := store.ValidateMetadataKey(s[len("metadata:"):]); err != nil {
			return false, "", bad("order by", s, "names no possible metadata key: "+err.Error())
		}
		return true, s[len("metadata:"):], nil
	}
	return false, "", bad("order by", s, `must be "stream" or "metadata:NAME"`)
}

// Config configures an Engine. The zero value is the default configuration.
type Config struct {
	// CommitInterval is how often a group's acks, parks and other changes
	// are written to its state stream, in one append. A crash can
	// redeliver the events acked within the last interval. Defaults to
	// 100 ms.
	CommitInterval time.Duration
	// SnapshotEvery is how many commits of a group are followed by a
	// compacted snapshot of its whole state, so that opening reads at most
	// that many records. Defaults to 256.
	SnapshotEvery int
	// TickInterval is how often ack deadlines and redelivery delays are
	// checked. Defaults to 50 ms.
	TickInterval time.Duration
	// Now is the engine's clock. Defaults to time.Now.
	Now func() time.Time
	// Logger receives notices. Defaults to slog.Default().
	Logger *slog.Logger

	// manualTicks turns the background tick off (tests call tick), and
	// manualCommits the background commits (tests call Flush).
	manualTicks, manualCommits bool
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = DefaultCommitInterval
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = DefaultSnapshotEvery
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.CommitInterval < 0 || cfg.CommitInterval > maxCommitInterval:
		return cfg, bad("commit interval", cfg.CommitInterval, "must be between 0 and 10s")
	case cfg.SnapshotEvery < 1 || cfg.SnapshotEvery > maxLimit:
		return cfg, bad("snapshot every", cfg.SnapshotEvery, "must be between 1 and 1000000")
	case cfg.TickInterval < time.Millisecond || cfg.TickInterval > time.Minute:
		return cfg, bad("tick interval", cfg.TickInterval, "must be between 1ms and 1m")
	}
	return cfg, nil
}
