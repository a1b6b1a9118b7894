// Package kv is the embedded target of projections, for tests and small
// tools: a projection's state is keys and values in one file (bbolt), and
// each batch of events commits with the version's checkpoint in one
// transaction, as the PostgreSQL target does (package projection). Events
// a handler fails on are parked and never stop the projection. Each
// version has its own keys, so a new version is built beside the serving
// one and swapped in once it has caught up.
//
// Side effects (projection.Tx.Effect) have no place here: a handler that
// must fire them wants the PostgreSQL target.
package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
)

// Errors. They match rewind.ErrInvalidArgument or rewind.ErrStreamNotFound
// (not found) as their class says.
var (
	// ErrBadDefinition: a Projection, key or call is not valid; nothing was written.
	ErrBadDefinition = errors.New("kv: bad definition")
	// ErrNotFound: no such projection version.
	ErrNotFound = errors.New("kv: not found")
	// ErrNotCaughtUp: a swap to a version behind the serving one.
	ErrNotCaughtUp = errors.New("kv: version not caught up")
)

// Error is the typed error of the package.
type Error struct {
	Op, Name string
	Version  int
	Err      error
	Reason   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("kv: %s %q version %d: %s; %s", e.Op, e.Name, e.Version, e.Err.Error()[len("kv: "):], e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the rewind sentinel of the error's class.
func (e *Error) Is(target error) bool {
	switch e.Err {
	case ErrBadDefinition, ErrNotCaughtUp:
		return target == rewind.ErrInvalidArgument
	case ErrNotFound:
		return target == rewind.ErrStreamNotFound
	}
	return false
}

// Handler applies one event through tx; an error parks the event.
type Handler func(ctx context.Context, tx *Tx, ev *rewind.RecordedEvent) error

// Projection is a named, versioned set of handlers writing keys.
type Projection struct {
	// Name: lower-case letters, digits and _, starting with a letter, at
	// most 40 bytes. Version: from 1.
	Name    string
	Version int
	// Handlers maps an event type to its handler; other types are not
	// read, but advance the checkpoint.
	Handlers map[string]Handler
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

func (p *Projection) validate() error {
	bad := func(reason string) error {
		return &Error{Op: "define", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: reason}
	}
	switch {
	case !nameRE.MatchString(p.Name):
		return bad("the name must be 1–40 lower-case letters, digits or _, starting with a letter")
	case p.Version < 1:
		return bad("the version must be 1 or more")
	case len(p.Handlers) == 0:
		return bad("give at least one handler")
	}
	for t, h := range p.Handlers {
		if t == "" || h == nil {
			return bad("a handler's event type must not be empty and its handler not nil")
		}
	}
	return nil
}

func (p *Projection) types() []string {
	ts := make([]string, 0, len(p.Handlers))
	for t := range p.Handlers {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// The file's layout: a bucket per version, "NAME/vN", holding the
// buckets "data" (the projection's keys), "parked" (position → JSON)
// and the key "checkpoint"; and a bucket "serving" (NAME → version).
var (
	dataBucket    = []byte("data")
	parkedBucket  = []byte("parked")
	checkpointKey = []byte("checkpoint")
	servingBucket = []byte("serving")
)

func versionBucket(name string, version int) []byte {
	return []byte(name + "/v" + strconv.Itoa(version))
}

// DB is an open kv file.
type DB struct{ bolt *bolt.DB }

// Open opens (creating) the file at path. One process at a time: a second
// Open of the same file waits up to 1 s, then fails.
func Open(path string) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", path, err)
	}
	return &DB{bolt: b}, nil
}

// Close closes the file.
func (db *DB) Close() error { return db.bolt.Close() }

// Tx is a handler's view of the batch's transaction on its version's keys.
type Tx struct {
	b *bolt.Bucket
}

// MaxKey is the longest key, in bytes.
const MaxKey = 4096

// Put sets key to value (both copied). An empty or too long key is an
// error, which parks the event.
func (t *Tx) Put(key string, value []byte) error {
	if key == "" || len(key) > MaxKey {
		return fmt.Errorf("kv: a key must be 1 to %d bytes, not %d", MaxKey, len(key))
	}
	return t.b.Put([]byte(key), slices.Clone(value))
}

// PutJSON sets key to v marshalled as JSON.
func (t *Tx) PutJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.Put(key, b)
}

// Get returns key's value (a copy), or nil when it has none.
func (t *Tx) Get(key string) []byte { return slices.Clone(t.b.Get([]byte(key))) }

// Delete removes key.
func (t *Tx) Delete(key string) error { return t.b.Delete([]byte(key)) }

// Status is a version's checkpoint and parked count.
type Status struct {
	Name     string          `json:"name"`
	Version  int             `json:"version"`
	Position rewind.Position `json:"position"`
	Keys     int             `json:"keys"`
	Parked   int             `json:"parked"`
	Serving  bool            `json:"serving"`
}

// Parked is an event a handler failed on.
type Parked struct {
	Position rewind.Position `json:"position"`
	Type     string          `json:"type"`
	Stream   string          `json:"stream"`
	Error    string          `json:"error"`
}

// Config is what a Runner reads and how it batches.
type Config struct {
	// Store is the event store (required).
	Store rewind.Store
	// BatchSize is the events per transaction (default 1000).
	BatchSize int
	// PollInterval is how often Run looks for new events when caught up
	// (default 50 ms).
	PollInterval time.Duration
}

// Runner applies the log to one version of a projection.
type Runner struct {
	db  *DB
	p   Projection
	cfg Config
	bkt []byte
}

// New returns a Runner of p on db. The version's keys are created at the
// first batch; the first version of a name to run serves.
func New(db *DB, p Projection, cfg Config) (*Runner, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, &Error{Op: "define", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: "Config.Store is required"}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	return &Runner{db: db, p: p, cfg: cfg, bkt: versionBucket(p.Name, p.Version)}, nil
}

// CatchUp applies every event up to the end of the log as it stands when
// it starts, then returns.
func (r *Runner) CatchUp(ctx context.Context) error {
	_, err := r.pass(ctx)
	return err
}

// Run applies events until ctx ends, polling for new ones.
func (r *Runner) Run(ctx context.Context) error {
	for {
		idle, err := r.pass(ctx)
		if err != nil {
			return err
		}
		if idle {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(r.cfg.PollInterval):
			}
		}
	}
}

// pass applies the events after the checkpoint up to the log's end. It
// reports idle when there was nothing to apply.
func (r *Runner) pass(ctx context.Context) (idle bool, err error) {
	cp, err := r.checkpoint()
	if err != nil {
		return false, err
	}
	end, err := logEnd(ctx, r.cfg.Store)
	if err != nil {
		return false, err
	}
	if end <= cp {
		return true, r.ensure()
	}
	var batch []rewind.RecordedEvent
	w := replay.Window{From: replay.AtPosition(cp + 1), To: replay.AtPosition(end), Types: r.p.types()}
	_, err = replay.Run(ctx, r.cfg.Store, w, func(ctx context.Context, ev *rewind.RecordedEvent) error {
		batch = append(batch, ev.Clone())
		if len(batch) < r.cfg.BatchSize {
			return nil
		}
		err := r.apply(ctx, batch, batch[len(batch)-1].Position)
		batch = batch[:0]
		return err
	}, replay.Options{BatchSize: 256})
	if err != nil {
		return false, err
	}
	// The window's end, even if the filter kept nothing after the last
	// event: long filtered-out ranges advance the checkpoint.
	return false, r.apply(ctx, batch, end)
}

func (r *Runner) ensure() error {
	return r.db.bolt.Update(func(tx *bolt.Tx) error {
		_, err := r.bucket(tx)
		return err
	})
}

// bucket returns the version's bucket, creating it (and making the
// version serve when its name has none).
func (r *Runner) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(r.bkt)
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{dataBucket, parkedBucket} {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	s, err := tx.CreateBucketIfNotExists(servingBucket)
	if err != nil {
		return nil, err
	}
	if s.Get([]byte(r.p.Name)) == nil {
		err = s.Put([]byte(r.p.Name), []byte(strconv.Itoa(r.p.Version)))
	}
	return b, err
}

func (r *Runner) checkpoint() (rewind.Position, error) {
	var cp rewind.Position
	err := r.db.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(r.bkt); b != nil {
			cp = decodePos(b.Get(checkpointKey))
		}
		return nil
	})
	return cp, err
}

func encodePos(p rewind.Position) []byte { return binary.BigEndian.AppendUint64(nil, uint64(p)) }

func decodePos(b []byte) rewind.Position {
	if len(b) != 8 {
		return 0
	}
	return rewind.Position(binary.BigEndian.Uint64(b))
}

// errParkOne rolls back a batch whose handler failed: it is applied again
// one event at a time.
var errParkOne = errors.New("kv: a handler failed")

// apply applies batch and moves the checkpoint to through in one
// transaction; if a handler fails, it applies the events one transaction
// each, parking those that fail.
func (r *Runner) apply(ctx context.Context, batch []rewind.RecordedEvent, through rewind.Position) error {
	err := r.db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := r.bucket(tx)
		if err != nil {
			return err
		}
		t := &Tx{b: b.Bucket(dataBucket)}
		for i := range batch {
			if err := r.p.Handlers[batch[i].Type](ctx, t, &batch[i]); err != nil {
				return errParkOne
			}
		}
		return b.Put(checkpointKey, encodePos(through))
	})
	if !errors.Is(err, errParkOne) {
		return err
	}
	for i := range batch {
		ev := &batch[i]
		var herr error
		err := r.db.bolt.Update(func(tx *bolt.Tx) error {
			b, err := r.bucket(tx)
			if err != nil {
				return err
			}
			if herr = r.p.Handlers[ev.Type](ctx, &Tx{b: b.Bucket(dataBucket)}, ev); herr != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errParkOne
			}
			return b.Put(checkpointKey, encodePos(ev.Position))
		})
		if errors.Is(err, errParkOne) {
			err = r.park(ev, herr)
		}
		if err != nil {
			return err
		}
	}
	return r.db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := r.bucket(tx)
		if err != nil {
			return err
		}
		return b.Put(checkpointKey, encodePos(through))
	})
}

// park records ev as parked with its handler's error and moves the
// checkpoint past it, in one transaction (the handler's writes were
// rolled back).
func (r *Runner) park(ev *rewind.RecordedEvent, herr error) error {
	return r.db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := r.bucket(tx)
		if err != nil {
			return err
		}
		rec, err := json.Marshal(Parked{Position: ev.Position, Type: ev.Type, Stream: ev.Stream, Error: herr.Error()})
		if err != nil {
			return err
		}
		if err := b.Bucket(parkedBucket).Put(encodePos(ev.Position), rec); err != nil {
			return err
		}
		return b.Put(checkpointKey, encodePos(ev.Position))
	})
}

// logEnd returns the last acknowledged position of s.
func logEnd(ctx context.Context, s rewind.Store) (rewind.Position, error) {
	if lp, ok := s.(rewind.LastPositioner); ok {
		return lp.LastPosition(ctx)
	}
	d, ok := s.(rewind.Describer)
	if !ok {
		return 0, errors.New("kv: the store reports no last position (neither LastPositioner nor Describer)")
	}
	info, err := d.Describe(ctx)
	return info.LastPosition, err
}

// Get returns the value of key in the serving version of name (nil when
// it has none).
func (db *DB) Get(name, key string) ([]byte, error) {
	var out []byte
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b, err := servingData(tx, name)
		if err != nil {
			return err
		}
		out = slices.Clone(b.Get([]byte(key)))
		return nil
	})
	return out, err
}

// Scan calls fn with each key starting with prefix in the serving version
// of name, in key order, until fn returns false. The value is valid
// during the call only.
func (db *DB) Scan(name, prefix string, fn func(key string, value []byte) bool) error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		b, err := servingData(tx, name)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			if !fn(string(k), v) {
				return nil
			}
		}
		return nil
	})
}

func servingData(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	var v []byte
	if s := tx.Bucket(servingBucket); s != nil {
		v = s.Get([]byte(name))
	}
	if v == nil {
		return nil, &Error{Op: "read", Name: name, Err: ErrNotFound, Reason: "no version of it has run"}
	}
	n, _ := strconv.Atoi(string(v))
	return tx.Bucket(versionBucket(name, n)).Bucket(dataBucket), nil
}

// Status returns the status of every version of name, by version.
func (db *DB) Status(name string) ([]Status, error) {
	var out []Status
	err := db.bolt.View(func(tx *bolt.Tx) error {
		serving := -1
		if s := tx.Bucket(servingBucket); s != nil {
			if v := s.Get([]byte(name)); v != nil {
				serving, _ = strconv.Atoi(string(v))
			}
		}
		prefix := []byte(name + "/v")
		return tx.ForEach(func(k []byte, b *bolt.Bucket) error {
			rest, ok := bytes.CutPrefix(k, prefix)
			if !ok {
				return nil
			}
			v, err := strconv.Atoi(string(rest))
			if err != nil {
				return nil
			}
			out = append(out, Status{Name: name, Version: v, Position: decodePos(b.Get(checkpointKey)),
				Keys: b.Bucket(dataBucket).Stats().KeyN, Parked: b.Bucket(parkedBucket).Stats().KeyN, Serving: v == serving})
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Status) int { return a.Version - b.Version })
	if err == nil && len(out) == 0 {
		return nil, &Error{Op: "status", Name: name, Err: ErrNotFound, Reason: "no version of it has run"}
	}
	return out, err
}

// Parked returns the parked events of a version, by position.
func (db *DB) Parked(name string, version int) ([]Parked, error) {
	var out []Parked
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(versionBucket(name, version))
		if b == nil {
			return &Error{Op: "parked", Name: name, Version: version, Err: ErrNotFound, Reason: "that version has not run"}
		}
		return b.Bucket(parkedBucket).ForEach(func(_, v []byte) error {
			var p Parked
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Swap makes version serve name's reads in place of the serving version,
// if it has applied at least as far: readers (Get, Scan) switch at once.
// The swapped-out version's keys stay until Drop.
func (db *DB) Swap(name string, version int) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(versionBucket(name, version))
		s := tx.Bucket(servingBucket)
		if b == nil || s == nil {
			return &Error{Op: "swap", Name: name, Version: version, Err: ErrNotFound, Reason: "run it first (Runner.CatchUp)"}
		}
		cur, _ := strconv.Atoi(string(s.Get([]byte(name))))
		if cb := tx.Bucket(versionBucket(name, cur)); cb != nil {
			if have, want := decodePos(b.Get(checkpointKey)), decodePos(cb.Get(checkpointKey)); have < want {
				return &Error{Op: "swap", Name: name, Version: version, Err: ErrNotCaughtUp,
					Reason: fmt.Sprintf("it is at %d, the serving version %d at %d: catch it up first", have, cur, want)}
			}
		}
		return s.Put([]byte(name), []byte(strconv.Itoa(version)))
	})
}

// Drop removes a version that does not serve.
func (db *DB) Drop(name string, version int) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		if s := tx.Bucket(servingBucket); s != nil && string(s.Get([]byte(name))) == strconv.Itoa(version) {
			return &Error{Op: "drop", Name: name, Version: version, Err: ErrBadDefinition, Reason: "it serves: swap another version in first"}
		}
		if err := tx.DeleteBucket(versionBucket(name, version)); errors.Is(err, bolt.ErrBucketNotFound) {
			return &Error{Op: "drop", Name: name, Version: version, Err: ErrNotFound, Reason: "that version has not run"}
		} else if err != nil {
			return err
		}
		return nil
	})
}
