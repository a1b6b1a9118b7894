package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/bench"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/store"
)

// benchReplayResult is what `rewind bench replay` prints. Figures are the
// medians over the rounds; the passes are listed too.
type benchReplayResult struct {
	Events  int `json:"events"`
	Streams int `json:"streams"`
	Rounds  int `json:"rounds"`
	// EventsPerSec: replay.Run of the whole log into a counting handler.
	EventsPerSec float64 `json:"events_per_sec"`
	// RawEventsPerSec: the raw read+CRC loop of `bench disk` over as many
	// 128-byte frames, in the same run.
	RawEventsPerSec float64 `json:"raw_events_per_sec"`
	Ratio           float64 `json:"ratio"`
	// DigestEventsPerSec: the same replay computing its SHA-256 digest.
	DigestEventsPerSec float64 `json:"digest_events_per_sec"`
	DigestRatio        float64 `json:"digest_ratio"`
	// ReadAllEventsPerSec: a loop over the contract's ReadAll, the path a
	// replay takes on a store without the batch fast path.
	ReadAllEventsPerSec float64     `json:"readall_events_per_sec"`
	ReadAllRatio        float64     `json:"readall_ratio"`
	Passes              [][]float64 `json:"passes"` // per round: raw, replay, digest, readall
	FillSeconds         float64     `json:"fill_seconds"`
	LoadBefore          string      `json:"load_avg_before,omitempty"`
	LoadAfter           string      `json:"load_avg_after,omitempty"`
}

func (a *app) benchReplayCmd() *cobra.Command {
	var (
		events, streams, rounds int
		jsonOut                 bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Measure replay into a handler against the raw read+CRC loop",
		Long: `Fill the store in --data-dir up to --events events (128-byte events over
--streams streams, when it holds fewer), reopen it, and in the same run measure,
--rounds times in turn (warm, after one untimed pass of each):

  raw_events_per_sec     the raw read+CRC loop of 'rewind bench disk' (read_rps)
                         over --events 128-byte frames in a file next to --data-dir
  events_per_sec         replay.Run of the whole log into a handler that counts
  digest_events_per_sec  the same, computing the replay's SHA-256 digest
  readall_events_per_sec a loop over the store's ReadAll

Figures are medians over the rounds; ratio = events_per_sec / raw_events_per_sec.`,
		Example: `  rewind bench replay --data-dir /tmp/b4 --events 1000000 --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runBenchReplay(cmd.Context(), events, streams, rounds, jsonOut)
		},
	}
	config.IntVar(cmd.Flags(), &events, "events", 1_000_000, "events the store should hold (and frames the raw loop reads)")
	config.IntVar(cmd.Flags(), &streams, "streams", 1000, "streams to spread filled events over")
	config.IntVar(cmd.Flags(), &rounds, "rounds", 3, "measured passes of each loop, interleaved (the median is reported)")
	atLeast(cmd.Flags(), 1, "events", "streams", "rounds")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) runBenchReplay(ctx context.Context, events, streams, rounds int, jsonOut bool) error {
	out := benchReplayResult{Events: events, Streams: streams, Rounds: rounds}
	out.LoadBefore = loadAverage()
	s, err := store.Open(a.dataDir, store.Config{Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		return err
	}
	if have := int(s.Info().LastPosition); have < events {
		bar := a.newProgress("fill", "events", int64(events-have))
		start := time.Now()
		batch := max(1, min(1000, (events-have)/streams))
		_, err = bench.Append(ctx, s, bench.AppendConfig{Writers: 4, Batch: batch, Events: events - have, Streams: streams, Progress: bar.set})
		bar.done(err == nil)
		out.FillSeconds = time.Since(start).Seconds()
		if err != nil {
			s.Close()
			return err
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	if s, err = store.Open(a.dataDir, store.Config{}); err != nil {
		return err
	}
	defer s.Close()
	w := replay.Window{To: replay.AtPosition(rewind.Position(events))}
	abs, err := filepath.Abs(a.dataDir)
	if err != nil {
		return err
	}
	raw, err := os.CreateTemp(filepath.Dir(abs), "rewind-bench-raw-*")
	if err != nil {
		return err
	}
	raw.Close()
	defer os.Remove(raw.Name())
	if err := bench.WriteFrames(raw.Name(), events, 128); err != nil {
		return err
	}
	passes := []func() (float64, error){
		func() (float64, error) { return bench.ReadFramesRPS(raw.Name(), events) },
		func() (float64, error) { return replayRPS(ctx, s, w, false) },
		func() (float64, error) { return replayRPS(ctx, s, w, true) },
		func() (float64, error) {
			r, err := bench.Replay(s.ReadAll(ctx, rewind.ReadAllOptions{}))
			return r.EventsPerSec, err
		},
	}
	for round := -1; round < rounds; round++ { // round -1 warms up
		figs := make([]float64, len(passes))
		for i, p := range passes {
			if figs[i], err = p(); err != nil {
				return err
			}
		}
		if round >= 0 {
			out.Passes = append(out.Passes, figs)
		}
	}
	med := func(i int) float64 {
		v := make([]float64, len(out.Passes))
		for r := range out.Passes {
			v[r] = out.Passes[r][i]
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	out.RawEventsPerSec, out.EventsPerSec, out.DigestEventsPerSec, out.ReadAllEventsPerSec = med(0), med(1), med(2), med(3)
	r2 := func(x float64) float64 { return float64(int64(x/out.RawEventsPerSec*100+0.5)) / 100 }
	out.Ratio, out.DigestRatio, out.ReadAllRatio = r2(out.EventsPerSec), r2(out.DigestEventsPerSec), r2(out.ReadAllEventsPerSec)
	out.LoadAfter = loadAverage()
	if jsonOut {
		return a.printJSON(out)
	}
	a.printf("replay into a handler: %.0f events/s, %.2f × the raw read+CRC loop (%.0f records/s)\n"+
		"with its digest:       %.0f events/s (%.2f ×)\nthrough ReadAll:       %.0f events/s (%.2f ×)\n",
		out.EventsPerSec, out.Ratio, out.RawEventsPerSec, out.DigestEventsPerSec, out.DigestRatio, out.ReadAllEventsPerSec, out.ReadAllRatio)
	return nil
}

// replayRPS replays w into a handler that counts, and returns events/s.
func replayRPS(ctx context.Context, s rewind.Store, w replay.Window, digest bool) (float64, error) {
	var n int64
	var sink int
	start := time.Now()
	_, err := replay.Run(ctx, s, w, func(_ context.Context, ev *rewind.RecordedEvent) error {
		n++
		sink ^= len(ev.Data)
		return nil
	}, replay.Options{Digest: digest})
	_ = sink
	return float64(int64(float64(n) / time.Since(start).Seconds())), err
}
