package middleware

import (
	"context"
	"sync"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

// DedupStore remembers which events were handled, for a time.
type DedupStore interface {
	// Seen reports whether key was marked and its time to live has not
	// run out.
	Seen(ctx context.Context, key string) (bool, error)
	// Mark records key as handled for ttl.
	Mark(ctx context.Context, key string, ttl time.Duration) error
}

// DedupConfig configures Dedup. The zero value is the default.
type DedupConfig struct {
	// TTL is how long a handled key is remembered. Defaults to 24 h: keep
	// it longer than an event can take to come back (max deliveries times
	// the ack wait and backoff, and any replay or reset you may run).
	TTL time.Duration
	// Key returns the key of a message. Defaults to the event id.
	Key func(*consumer.Message) string
}

// Dedup skips (and acks) an event whose key was handled already, and
// marks the key once the handler succeeded. This makes redeliveries —
// after a crash, an ack wait that ran out or a replay — harmless for
// handlers whose effect is not itself idempotent, within the TTL.
//
// The mark is written after the handler's effect: a crash between the two
// runs the handler again. When the effect is a PostgreSQL write, commit
// the mark with it instead (package consumer/pgtx) to apply each event
// exactly once.
func Dedup(store DedupStore, cfg DedupConfig) consumer.Middleware {
	if cfg.TTL == 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Key == nil {
		cfg.Key = func(m *consumer.Message) string { return m.Event.ID.String() }
	}
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			key := cfg.Key(m)
			seen, err := store.Seen(ctx, key)
			if err != nil {
				return err
			}
			if seen {
				return nil
			}
			if err := h(ctx, m); err != nil {
				return err
			}
			return store.Mark(ctx, key, cfg.TTL)
		}
	}
}

// MemoryDedup is a DedupStore in memory, for one process. It holds at
// most MaxKeys keys: past that the oldest marks are forgotten first.
type MemoryDedup struct {
	// Now is its clock. Defaults to time.Now.
	Now     func() time.Time
	maxKeys int

	mu    sync.Mutex
	keys  map[string]time.Time
	order []memKey // in marking order
}

type memKey struct {
	key     string
	expires time.Time
}

// NewMemoryDedup returns an in-memory store of at most maxKeys keys
// (1,000,000 when maxKeys is 0).
func NewMemoryDedup(maxKeys int) *MemoryDedup {
	if maxKeys <= 0 {
		maxKeys = 1_000_000
	}
	return &MemoryDedup{Now: time.Now, maxKeys: maxKeys, keys: map[string]time.Time{}}
}

// Seen implements DedupStore.
func (s *MemoryDedup) Seen(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.keys[key]
	return ok && s.Now().Before(exp), nil
}

// Mark implements DedupStore.
func (s *MemoryDedup) Mark(_ context.Context, key string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	exp := now.Add(ttl)
	s.keys[key] = exp
	s.order = append(s.order, memKey{key, exp})
	// Forget what expired, and the oldest beyond the cap.
	for len(s.order) > 0 && (!now.Before(s.order[0].expires) || len(s.keys) > s.maxKeys) {
		k := s.order[0]
		s.order[0] = memKey{}
		s.order = s.order[1:]
		if cur, ok := s.keys[k.key]; ok && cur.Equal(k.expires) {
			delete(s.keys, k.key)
		}
	}
	return nil
}

// Len returns how many keys the store holds.
func (s *MemoryDedup) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}
