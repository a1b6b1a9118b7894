package eventlog

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Durability says when an append is acknowledged.
type Durability int

const (
	// Sync acknowledges an append only after its bytes are fsynced
	// (fdatasync). Concurrent appends share one fsync (group commit), so
	// durable throughput grows with concurrency. An acknowledged append
	// survives a process crash, a kernel crash and a power loss.
	Sync Durability = iota
	// Interval acknowledges an append once its bytes are written to the
	// operating system, and fsyncs every SyncInterval. An acknowledged
	// append survives a process crash; a kernel crash or power loss can lose
	// the appends of the last interval.
	Interval
	// None acknowledges once the bytes are written to the operating system
	// and never fsyncs except when a segment is sealed or the log is
	// closed. An acknowledged append survives a process crash only.
	None
)

// String returns "sync", "interval" or "none".
func (d Durability) String() string {
	switch d {
	case Sync:
		return "sync"
	case Interval:
		return "interval"
	case None:
		return "none"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability parses what String returns.
func ParseDurability(s string) (Durability, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "sync":
		return Sync, nil
	case "interval":
		return Interval, nil
	case "none":
		return None, nil
	}
	return 0, &rewind.ValidationError{Field: "durability", Value: s, Reason: `must be "sync", "interval" or "none"`}
}

// Defaults of Config, used by the library and by the flags and config file
// of `rewind serve` alike.
const (
	DefaultDurability        = Sync
	DefaultSyncInterval      = 100 * time.Millisecond
	DefaultSegmentSize       = 64 << 20
	DefaultIndexInterval     = 4096
	DefaultRetentionInterval = time.Minute
)

// Config configures a Log. The zero value is the default configuration.
type Config struct {
	// Durability says when an append is acknowledged. Defaults to Sync.
	Durability Durability
	// SyncInterval is how often Interval durability fsyncs. Defaults to 100ms.
	SyncInterval time.Duration
	// SegmentSize is the size at which a segment is sealed and a new one
	// started; segments are preallocated to it. Defaults to 64 MiB.
	SegmentSize int64
	// IndexInterval is the number of bytes between two entries of a
	// segment's sparse index. Defaults to 4096.
	IndexInterval int
	// NoPreallocate turns off preallocation of segment files. Defaults to false.
	NoPreallocate bool
	// MaxAge makes retention drop whole sealed segments whose newest record
	// is older than this. Defaults to 0: keep forever.
	MaxAge time.Duration
	// MaxBytes makes retention drop the oldest sealed segments while the log
	// is larger than this. Defaults to 0: no limit.
	MaxBytes int64
	// RetentionInterval is how often retention runs when MaxAge or MaxBytes
	// is set; it also runs whenever a segment is sealed. Defaults to 1 minute.
	RetentionInterval time.Duration
	// RetentionLimit, if set, is asked before retention removes segments,
	// with the last position it would remove; it returns the last position
	// retention may remove (segments ending after it stay until a later
	// pass). The store uses it to keep every removed position covered by
	// its index snapshot. It is called without the log's lock. Defaults to
	// nil: no limit.
	RetentionLimit func(want uint64) uint64
	// Logger receives recovery and retention reports. Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// OnFlush, when set, is called after each group commit is written (and
	// fsynced in Sync mode), before its appends are acknowledged, from the
	// log's flusher goroutine: it must return quickly. It exists for
	// metrics. Defaults to nil.
	OnFlush func(FlushInfo)
	// FS is the filesystem the log's files live in. Tests give one that
	// injects errors or simulates power cuts. Defaults to vfs.Default, the
	// operating system's.
	FS vfs.FS
}

// FlushInfo describes one group commit.
type FlushInfo struct {
	// Records and Bytes count what the group wrote.
	Records, Bytes int
	// Sync is how long the fsync took; 0 when the mode does not fsync
	// each group.
	Sync time.Duration
}

const (
	minSegmentSize = 64 << 10
	maxSegmentSize = 1 << 32
)

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = DefaultSegmentSize
	}
	if cfg.IndexInterval == 0 {
		cfg.IndexInterval = DefaultIndexInterval
	}
	if cfg.RetentionInterval == 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	switch {
	case cfg.Durability < Sync || cfg.Durability > None:
		return cfg, &rewind.ValidationError{Field: "durability", Value: cfg.Durability.String(), Reason: "unknown mode"}
	case cfg.SyncInterval < 0:
		return cfg, &rewind.ValidationError{Field: "sync interval", Value: cfg.SyncInterval.String(), Reason: "must be positive"}
	case cfg.SegmentSize < minSegmentSize || cfg.SegmentSize > maxSegmentSize:
		return cfg, &rewind.ValidationError{Field: "segment size", Value: fmt.Sprint(cfg.SegmentSize),
			Reason: fmt.Sprintf("must be between %d and %d bytes", minSegmentSize, int64(maxSegmentSize))}
	case cfg.IndexInterval < 64:
		return cfg, &rewind.ValidationError{Field: "index interval", Value: fmt.Sprint(cfg.IndexInterval), Reason: "must be at least 64 bytes"}
	case cfg.MaxAge < 0:
		return cfg, &rewind.ValidationError{Field: "max age", Value: cfg.MaxAge.String(), Reason: "must not be negative"}
	case cfg.MaxBytes < 0:
		return cfg, &rewind.ValidationError{Field: "max bytes", Value: fmt.Sprint(cfg.MaxBytes), Reason: "must not be negative"}
	case cfg.RetentionInterval < 0:
		return cfg, &rewind.ValidationError{Field: "retention interval", Value: cfg.RetentionInterval.String(), Reason: "must be positive"}
	}
	return cfg, nil
}
