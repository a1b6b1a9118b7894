package store

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Defaults of Config, used by the library and by the flags and config file
// of `rewind serve` alike.
const (
	DefaultMaxEventSize   = 1 << 20
	DefaultMaxBatchEvents = 10_000
	DefaultMaxBatchBytes  = 16 << 20
	DefaultDedupWindow    = 2 * time.Minute
	DefaultDedupMaxIDs    = 1_000_000
	DefaultSnapshotEvery  = 4_000_000
)

// Config configures a Store. The zero value is the default configuration.
type Config struct {
	// Log configures the durable log under the store: durability mode,
	// segment size, retention. Its zero value is eventlog's default
	// (Sync durability, 64 MiB segments, no retention).
	Log eventlog.Config
	// MaxEventSize bounds one event's encoded size: data, metadata, names
	// and about 40 bytes of framing. Defaults to 1 MiB, or MaxBatchBytes if
	// that is smaller.
	MaxEventSize int
	// MaxBatchEvents bounds the number of events of one append. Defaults to 10,000.
	MaxBatchEvents int
	// MaxBatchBytes bounds the encoded size of one append. Defaults to 16 MiB,
	// or the segment size less 1 KiB if that is smaller.
	MaxBatchBytes int
	// DedupWindow is how long event ids are remembered for idempotent
	// appends. Defaults to 2 minutes.
	DedupWindow time.Duration
	// DedupMaxIDs caps how many event ids are remembered, the newest kept;
	// each costs about 40 bytes of memory. Defaults to 1,000,000.
	DedupMaxIDs int
	// SnapshotEvery is how many appended events make the store write its
	// index snapshot in the background, so that opening after a crash
	// replays at most about that many events. Taking it holds appends for
	// about 10ms per million streams. Defaults to 4,000,000; -1 turns it off
	// (the snapshot is then only written on Close).
	SnapshotEvery int
	// Logger receives recovery reports and other notices. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Log.Logger == nil {
		cfg.Log.Logger = cfg.Logger
	}
	if cfg.MaxBatchEvents == 0 {
		cfg.MaxBatchEvents = DefaultMaxBatchEvents
	}
	segment := cfg.Log.SegmentSize
	if segment == 0 {
		segment = eventlog.DefaultSegmentSize
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = int(min(DefaultMaxBatchBytes, segment-1<<10))
	}
	if cfg.MaxEventSize == 0 {
		cfg.MaxEventSize = min(DefaultMaxEventSize, cfg.MaxBatchBytes)
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.DedupMaxIDs == 0 {
		cfg.DedupMaxIDs = DefaultDedupMaxIDs
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = DefaultSnapshotEvery
	}
	bad := func(field string, v any, reason string) error {
		return &rewind.ValidationError{Field: field, Value: fmt.Sprint(v), Reason: reason}
	}
	switch {
	case cfg.MaxEventSize < 1<<10 && cfg.MaxBatchBytes >= 1<<10 || cfg.MaxEventSize > eventlog.MaxPayload:
		return cfg, bad("max event size", cfg.MaxEventSize, fmt.Sprintf("must be between 1 KiB and %d bytes", eventlog.MaxPayload))
	case cfg.MaxBatchEvents < 1:
		return cfg, bad("max batch events", cfg.MaxBatchEvents, "must be at least 1")
	case cfg.MaxBatchBytes < cfg.MaxEventSize:
		return cfg, bad("max batch bytes", cfg.MaxBatchBytes, "must be at least the max event size")
	case int64(cfg.MaxBatchBytes) > segment-1<<10:
		return cfg, bad("max batch bytes", cfg.MaxBatchBytes, "must be smaller than the segment size less 1 KiB")
	case cfg.DedupWindow < 0:
		return cfg, bad("dedup window", cfg.DedupWindow, "must not be negative")
	case cfg.SnapshotEvery < -1:
		return cfg, bad("snapshot every", cfg.SnapshotEvery, "must be a number of events, or -1 for never")
	case cfg.DedupMaxIDs < 0:
		return cfg, bad("dedup max ids", cfg.DedupMaxIDs, "must not be negative")
	}
	return cfg, nil
}
