package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/bench"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/store"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure rewind and the machine it runs on",
		Long: `Benchmarks. Each prints one JSON object with --json. Compare the store's
figures with 'rewind bench disk' run on the same disk in the same session:
docs/benchmarks.md explains the method.`,
	}
	cmd.AddCommand(a.benchAppendCmd(), a.benchReadCmd(), a.benchDiskCmd(), a.benchReplayCmd(), a.benchBackfillCmd(),
		a.benchNATSCmd(), a.benchGroupsCmd(), a.benchProjectionCmd(), a.benchPgstoreCmd())
	var profile, memProfile string
	cmd.PersistentFlags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	cmd.PersistentFlags().StringVar(&memProfile, "memprofile", "", "write a heap profile at the end of the run to this file")
	var f *os.File
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := a.prepare(cmd); err != nil || profile == "" {
			return err
		}
		var err error
		if f, err = os.Create(profile); err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	cmd.PersistentPostRun = func(*cobra.Command, []string) {
		if memProfile != "" {
			if mf, err := os.Create(memProfile); err == nil {
				pprof.WriteHeapProfile(mf)
				mf.Close()
			}
		}
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
	}
	return cmd
}

// emptyDir makes sure a benchmark does not write into real data.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return invalidFlag("data-dir", dir, "is not empty; benchmarks write a fresh store, give an empty or new directory")
	}
	return nil
}

func (a *app) benchAppendCmd() *cobra.Command {
	var (
		cfg           bench.AppendConfig
		durability    string
		conns         int
		size          = config.Size(128)
		streamAppends bool
		jsonOut       bool
	)
	cmd := &cobra.Command{
		Use:   "append",
		Short: "Measure append throughput and latency",
		Long: `Append --events events of --size bytes from --writers concurrent writers, each
appending batches of --batch events and waiting for each append before the next,
into a fresh store in --data-dir. Reports events/s, MB/s of event data and the
p50/p99 latency of one append.

With --server URL (and --token), appends go through that server's API over
--connections client connections, and the server's own durability applies.`,
		Example: `  rewind bench append --data-dir /tmp/b1 --writers 64 --batch 100 --events 10000000 --size 128 --durability sync --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkBenchSize(size); err != nil {
				return err
			}
			cfg.Size = int(size)
			if a.server != "" {
				return a.runBenchAppendServer(cmd, cfg, conns, streamAppends, jsonOut)
			}
			d, err := eventlog.ParseDurability(durability)
			if err != nil {
				return err
			}
			if err := emptyDir(a.dataDir); err != nil {
				return err
			}
			s, err := store.Open(a.dataDir, store.Config{Log: eventlog.Config{Durability: d}})
			if err != nil {
				return err
			}
			bar := a.newProgress("append", "events", int64(cfg.Events))
			cfg.Progress = bar.set
			res, err := bench.Append(cmd.Context(), s, cfg)
			bar.done(err == nil)
			ls := s.Log().Stats()
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			out := struct {
				bench.AppendResult
				Durability  string  `json:"durability"`
				GroupSize   float64 `json:"mean_group_commit_events"`
				FsyncMicros float64 `json:"mean_fsync_us"`
			}{res, d.String(), ratio(ls.Records, ls.Flushes), ratio(ls.FsyncNanos, ls.Fsyncs*1000)}
			if jsonOut {
				return a.printJSON(out)
			}
			a.printf("%d events in %.2fs: %.0f events/s, %.1f MB/s; append latency p50 %.0fµs p99 %.0fµs (%s, %d writers, batch %d, %d bytes)\n",
				res.Events, res.Seconds, res.EventsPerSec, res.MBPerSec, res.P50Micros, res.P99Micros, d, res.Writers, res.Batch, res.Size)
			return nil
		},
	}
	f := cmd.Flags()
	config.IntVar(f, &cfg.Writers, "writers", 1, "concurrent writers")
	config.IntVar(f, &cfg.Batch, "batch", 1, "events per append")
	config.IntVar(f, &cfg.Events, "events", 1_000_000, "events to append in all")
	f.Var(&size, "size", "data per event, in bytes or with a unit (1KiB): from 1 byte to 1MiB less the event's envelope")
	config.IntVar(f, &cfg.Streams, "streams", 0, "streams to spread appends over, round-robin (default: one per writer)")
	f.StringVar(&durability, "durability", eventlog.DefaultDurability.String(), "sync, interval or none (with --server: the server's)")
	config.IntVar(f, &conns, "connections", 4, "with --server: client connections the writers share")
	config.BoolVar(f, &streamAppends, "stream-appends", false, "with --server: send the appends over AppendStream (one stream per connection) instead of one RPC each")
	atLeast(f, 1, "writers", "batch", "events", "connections")
	atLeast(f, 0, "streams")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) benchReadCmd() *cobra.Command {
	var (
		events, streams int
		jsonOut         bool
	)
	cmd := &cobra.Command{
		Use:   "read",
		Short: "Measure whole-log replay and store open time",
		Long: `Fill the store in --data-dir up to --events events (128-byte events over --streams
streams, when it holds fewer), close it, time reopening it, then replay the whole
log twice, checking every checksum and decoding every envelope. The second,
warm, replay is reported.

With --server URL (and --token), fills the server the same way through its API,
then times a subscription from the start delivering --events events.`,
		Example: `  rewind bench read --data-dir /tmp/b2 --events 10000000 --streams 1000000 --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if events < 1 || streams < 1 {
				return invalidFlag("events/--streams", fmt.Sprint(events, "/", streams), "must be at least 1")
			}
			if a.server != "" {
				return a.runBenchReadServer(cmd, events, streams, jsonOut)
			}
			s, err := store.Open(a.dataDir, store.Config{Log: eventlog.Config{Durability: eventlog.None}})
			if err != nil {
				return err
			}
			var fill time.Duration
			if have := int(s.Info().LastPosition); have < events {
				bar := a.newProgress("fill", "events", int64(events-have))
				start := time.Now()
				batch := max(1, min(1000, (events-have)/streams)) // so that every stream gets events
				_, err = bench.Append(ctx, s, bench.AppendConfig{Writers: 4, Batch: batch, Events: events - have, Streams: streams, Progress: bar.set})
				bar.done(err == nil)
				fill = time.Since(start)
				if err != nil {
					s.Close()
					return err
				}
			}
			if err := s.Close(); err != nil {
				return err
			}
			// The filling store is closed: return its memory so that the
			// peak RSS below is that of one store, as in a real process.
			runtime.GC()
			debug.FreeOSMemory()
			start := time.Now()
			s, err = store.Open(a.dataDir, store.Config{})
			if err != nil {
				return err
			}
			open := time.Since(start)
			defer s.Close()
			var res bench.ReplayResult
			for pass := 0; pass < 2; pass++ {
				if res, err = bench.Replay(s.ReadAll(ctx, rewind.ReadAllOptions{})); err != nil {
					return err
				}
			}
			peak, _ := bench.PeakRSSMB()
			out := struct {
				bench.ReplayResult
				OpenMillis  float64 `json:"open_ms"`
				FillSeconds float64 `json:"fill_seconds"`
				Streams     int     `json:"streams"`
				PeakRSSMB   float64 `json:"peak_rss_mb"`
			}{res, float64(open.Microseconds()) / 1e3, fill.Seconds(), s.Info().Streams, peak}
			if jsonOut {
				return a.printJSON(out)
			}
			a.printf("replayed %d events in %.2fs: %.0f events/s, %.1f MB/s; open took %.0fms; peak RSS %.0f MB (%d streams)\n",
				res.Events, res.Seconds, res.EventsPerSec, res.MBPerSec, out.OpenMillis, peak, out.Streams)
			return nil
		},
	}
	config.IntVar(cmd.Flags(), &events, "events", 1_000_000, "events the store should hold")
	config.IntVar(cmd.Flags(), &streams, "streams", 1000, "streams to spread filled events over")
	atLeast(cmd.Flags(), 1, "events", "streams")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) benchDiskCmd() *cobra.Command {
	var (
		cfg     bench.DiskConfig
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Measure the raw limits of the disk under --data-dir",
		Long: `Measure what a plain Go loop with no rewind code achieves on this disk, as the
reference for the store's figures: appending framed 128-byte records (length,
CRC-32C, position, timestamp) with an fsync every 1000 records
(sync_every_1000_rps) and with an fsync after every record (sync_each_rps), and
reading them back with CRC verification (read_rps, warm).`,
		Example: `  rewind bench disk --data-dir /tmp/b3 --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Dir = a.dataDir
			res, err := bench.Disk(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			a.printf("fsync every 1000 records: %.0f records/s\nfsync every record:       %.0f records/s (%.0fµs per fsync)\nread with CRC check:      %.0f records/s\n",
				res.SyncEvery1000RPS, res.SyncEachRPS, res.FsyncMicros, res.ReadRPS)
			return nil
		},
	}
	config.IntVar(cmd.Flags(), &cfg.Records, "events", 2_000_000, "records for the batched-fsync loop and the read-back")
	config.IntVar(cmd.Flags(), &cfg.SyncEachRecords, "sync-each-events", 3000, "records for the fsync-per-record loop")
	atLeast(cmd.Flags(), 1, "events", "sync-each-events")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(int64(float64(a)/float64(b)*10+0.5)) / 10
}

// checkBenchSize refuses a --size of 0 (not taken for the default) and one
// whose event, with its envelope, would not fit the store's default maximum
// event size.
func checkBenchSize(size config.Size) error {
	if size < 1 || size > config.Size(bench.MaxSize()) {
		return invalidFlag("size", size.String(), fmt.Sprintf("must be from 1 to %d bytes "+
			"(an event's data and its envelope together fit in %s)", bench.MaxSize(), config.Size(store.DefaultMaxEventSize)))
	}
	return nil
}
