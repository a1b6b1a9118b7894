package pgstore

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
)

// Defaults of Config.
const (
	DefaultSchema         = "rewind"
	DefaultMaxEventSize   = 1 << 20
	DefaultMaxBatchEvents = 10_000
	DefaultMaxBatchBytes  = 64 << 20
	DefaultPollInterval   = time.Second
)

// Config configures a Store. The zero value is the default.
type Config struct {
	// Schema is the PostgreSQL schema that holds the store's tables: a
	// lower-case identifier of at most 50 bytes, not PostgreSQL's own
	// (pg_..., information_schema). Several stores can share
	// a database under different schemas. Defaults to "rewind".
	Schema string
	// MaxEventSize bounds one event, counted as the embedded store counts
	// it (body, type, metadata and a few bytes of framing). Defaults to 1 MiB.
	MaxEventSize int
	// MaxBatchEvents bounds the events of one append. Defaults to 10,000.
	MaxBatchEvents int
	// MaxBatchBytes bounds the size of one append. Defaults to 64 MiB
	// (PostgreSQL refuses a parameter over 1 GiB).
	MaxBatchBytes int
	// PollInterval is how often a caught-up subscription reads the log
	// when no notification arrives: the fallback for LISTEN/NOTIFY (a lost
	// listener connection, a pooler that drops notifications). Defaults to
	// 1 second.
	PollInterval time.Duration
	// Logger receives notices (a lost listener connection). Defaults to
	// slog.Default().
	Logger *slog.Logger
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,49}$`)

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if !schemaName.MatchString(cfg.Schema) {
		return cfg, &rewind.ValidationError{Field: "schema", Value: cfg.Schema,
			Reason: "must be a lower-case identifier: a-z, 0-9 and _, not starting with a digit, at most 50 bytes"}
	}
	if strings.HasPrefix(cfg.Schema, "pg_") || cfg.Schema == "information_schema" {
		return cfg, &rewind.ValidationError{Field: "schema", Value: cfg.Schema,
			Reason: "is PostgreSQL's own (pg_catalog, pg_toast, pg_temp_N, information_schema: names starting with " +
				"pg_ are reserved); name a schema of your own"}
	}
	if cfg.MaxEventSize == 0 {
		cfg.MaxEventSize = DefaultMaxEventSize
	}
	if cfg.MaxBatchEvents == 0 {
		cfg.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.MaxEventSize < 0 || cfg.MaxBatchEvents < 0 || cfg.MaxBatchBytes < 0:
		return cfg, &rewind.ValidationError{Field: "limits", Reason: "must not be negative"}
	case cfg.MaxBatchBytes > 512<<20:
		return cfg, &rewind.ValidationError{Field: "max batch bytes", Value: fmt.Sprint(cfg.MaxBatchBytes),
			Reason: "must be at most 512 MiB: PostgreSQL refuses a parameter over 1 GiB"}
	case cfg.PollInterval < 0:
		return cfg, &rewind.ValidationError{Field: "poll interval", Reason: "must not be negative"}
	}
	return cfg, nil
}

// Advisory lock keys: the first key says what is locked, the second which
// schema (a hash of its name: two schemas colliding only share a lock).
const (
	lockAppend  int32 = 0x52574e41 // "RWNA": the append lock, taken by every append and delete
	lockMigrate int32 = 0x52574e4d // "RWNM": held while migrating
	lockGroups  int32 = 0x52574e47 // "RWNG": held by the server that runs the consumer groups
)

func lockKeys(schema string, what int32) (int32, int32) {
	h := fnv.New32a()
	h.Write([]byte(schema))
	return what, int32(h.Sum32())
}

// quoteIdent quotes a validated identifier.
func quoteIdent(s string) string { return `"` + s + `"` }

// channel is the LISTEN/NOTIFY channel of a schema.
func channel(schema string) string { return "rewind_" + schema }
