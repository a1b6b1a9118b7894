package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// codeThrottled is a run its throttle paused: a signal crossed its
// critical threshold or could not be read. Exit status 13.
const codeThrottled rewind.Code = "throttled"

// throttleError gives a run its throttle paused its own code.
func throttleError(err error) (rewind.Code, bool) {
	if errors.Is(err, backfill.ErrThrottled) {
		return codeThrottled, true
	}
	return "", false
}

// throttleFlags override a job file's throttle: block.
type throttleFlags struct {
	cmd       *cobra.Command
	maxRate   string
	chunkTime time.Duration
	maxLag    time.Duration
	slowFrom  float64
	file      string
}

func (f *throttleFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	fs.StringVar(&f.maxRate, "max-rate", "", "cap the rows per second of this process's workers on the run (0: no cap; "+
		"overrides the job file's throttle max_rate)")
	fs.DurationVar(&f.chunkTime, "chunk-time", 0, "the time a chunk should take: chunk sizes adapt to it unless the "+
		"job fixes chunk: (default 500ms, from 10ms to 1m; overrides throttle chunk_time)")
	fs.DurationVar(&f.maxLag, "max-lag", 0, "wait while a replica of the target lags more than this "+
		"(pg_stat_replication; default 1.5s; 0 turns the lag signal off; overrides throttle replication_lag max)")
	fs.Float64Var(&f.slowFrom, "slow-from", 0, "slow down in proportion once the signals reach this share of their max "+
		"(default 0: from any load; 1 turns the slow-down off; overrides throttle slow_from)")
	fs.StringVar(&f.file, "throttle-file", "", "wait while this file exists (overrides throttle file path)")
}

func (f *throttleFlags) changed(name string) bool {
	fl := f.cmd.Flags().Lookup(name)
	return fl != nil && fl.Changed
}

// spec is the job file's throttle block (the default throttle without
// one) with the flags given over it, checked.
func (f *throttleFlags) spec(file *jobfile.File) (throttle.Spec, error) {
	var s throttle.Spec
	if file != nil {
		s = file.Throttle()
	}
	if f.changed("max-rate") {
		r, err := throttle.ParseRate(f.maxRate)
		if err != nil {
			return s, invalidFlag("max-rate", f.maxRate, err.Error())
		}
		s.MaxRate = r
	}
	if f.changed("chunk-time") {
		if f.chunkTime < throttle.MinChunkTime || f.chunkTime > throttle.MaxChunkTime {
			return s, invalidFlag("chunk-time", f.chunkTime.String(),
				fmt.Sprintf("must be from %s to %s", throttle.MinChunkTime, throttle.MaxChunkTime))
		}
		s.ChunkTime = f.chunkTime
	}
	if f.changed("slow-from") {
		if !(f.slowFrom >= 0 && f.slowFrom <= 1) { // NaN too
			return s, invalidFlag("slow-from", fmt.Sprint(f.slowFrom), "must be a share of the signals' max from 0 to 1 (1: no slow-down)")
		}
		s.SlowFrom = f.slowFrom
	}
	if f.changed("max-lag") {
		switch {
		case f.maxLag < 0:
			return s, invalidFlag("max-lag", f.maxLag.String(), "must be 0 (no lag signal) or positive, such as 1.5s")
		case f.maxLag == 0:
			s.Lag = &throttle.LagSpec{Off: true}
		default:
			l := throttle.LagSpec{Max: f.maxLag}
			if s.Lag != nil && !s.Lag.Off {
				l.Critical = s.Lag.Critical
			}
			if l.Critical > 0 && l.Critical < l.Max {
				return s, invalidFlag("max-lag", f.maxLag.String(),
					fmt.Sprintf("must not exceed the job file's replication_lag critical %s", l.Critical))
			}
			s.Lag = &l
		}
	}
	if f.changed("throttle-file") {
		if f.file == "" {
			return s, invalidFlag("throttle-file", "", "must be a file's path")
		}
		fs := throttle.FileSpec{Path: f.file}
		if s.File != nil {
			fs.Critical = s.File.Critical
		}
		s.File = &fs
	}
	if err := s.Validate(); err != nil {
		return s, &rewind.ValidationError{Field: "throttle", Reason: err.Error()}
	}
	return s, nil
}

// throttleFor builds the throttle spec describes, on the target's pool.
func throttleFor(spec *throttle.Spec, cfg *backfill.Config) (*throttle.Throttler, func(), error) {
	if spec == nil {
		return nil, func() {}, nil
	}
	return spec.Build(cfg.DB, throttle.Config{Logger: cfg.Logger})
}
