// Package natsbench measures NATS JetStream on this machine, as the
// reference for rewind's server benchmarks: a private nats-server on a
// free loopback port with a file-storage stream, async publishing and a
// pull consumer with explicit acks.
package natsbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrSyncUnsupported says the nats-server binary does not know
// sync_interval (it appeared in NATS 2.10).
var ErrSyncUnsupported = errors.New("natsbench: this nats-server does not support sync_interval (NATS >= 2.10 does)")

// Server is a private nats-server process.
type Server struct {
	URL    string
	cmd    *exec.Cmd
	dir    string
	exited chan error
	stderr *strings.Builder
}

// Start runs binary with JetStream storing in a new directory under dir.
// syncAlways sets sync_interval: always (fsync every message); otherwise
// NATS keeps its default (fsync every 2 minutes).
func Start(ctx context.Context, binary, dir string, syncAlways bool) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	sdir, err := os.MkdirTemp(dir, "nats-")
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("listen: %q\njetstream {\n  store_dir: %q\n", addr, filepath.Join(sdir, "js"))
	if syncAlways {
		conf += "  sync_interval: always\n"
	}
	conf += "}\n"
	path := filepath.Join(sdir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	s := &Server{URL: "nats://" + addr, dir: sdir, exited: make(chan error, 1), stderr: &strings.Builder{}}
	s.cmd = exec.Command(binary, "-c", path)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(sdir)
		return nil, fmt.Errorf("start %s: %w (give the path of a nats-server binary with --nats-server)", binary, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	for i := 0; ; i++ {
		select {
		case err := <-s.exited:
			os.RemoveAll(sdir)
			if strings.Contains(s.stderr.String(), `unknown field "sync_interval"`) {
				return nil, ErrSyncUnsupported
			}
			return nil, fmt.Errorf("nats-server exited: %w: %s", err, s.stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return s, nil
		}
		if i == 200 {
			s.Stop()
			return nil, fmt.Errorf("nats-server did not listen on %s: %s", addr, s.stderr.String())
		}
		select {
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		}
	}
}

// Stop ends the server and removes its storage.
func (s *Server) Stop() error {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return os.RemoveAll(s.dir)
}

// Result is one measurement.
type Result struct {
	Messages     int     `json:"messages"`
	Seconds      float64 `json:"seconds"`
	MessagesPerS float64 `json:"messages_per_sec"`
}

func result(n int, d time.Duration) Result {
	return Result{Messages: n, Seconds: float64(d.Milliseconds()) / 1e3,
		MessagesPerS: float64(int64(float64(n) / d.Seconds()))}
}

const stream = "BENCH"

// CreateStream creates the file-storage stream the benchmarks use.
func CreateStream(ctx context.Context, url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"bench.>"},
		Storage: jetstream.FileStorage})
	return err
}

// PublishAsync publishes msgs messages of size bytes from publishers
// connections, each with the client's default bound on pending acks, and
// waits for every ack.
func PublishAsync(ctx context.Context, url string, publishers, msgs, size int) (Result, error) {
	data := make([]byte, size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, publishers)
	conns := make([]jetstream.JetStream, publishers)
	for p := range publishers {
		nc, err := nats.Connect(url)
		if err != nil {
			return Result{}, err
		}
		defer nc.Close()
		conns[p], err = jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(
			func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
		if err != nil {
			return Result{}, err
		}
	}
	start := time.Now()
	for p := range publishers {
		wg.Go(func() {
			js := conns[p]
			subject := fmt.Sprintf("bench.%d", p)
			n := msgs / publishers
			if p < msgs%publishers {
				n++
			}
			for range n {
				// The client bounds pending acks (4,000 by default); a stall
				// waits for acks rather than failing.
				if _, err := js.PublishAsync(subject, data, jetstream.WithStallWait(time.Minute)); err != nil {
					errs[p] = err
					return
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				errs[p] = ctx.Err()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	if n := failed.Load(); n > 0 {
		return Result{}, fmt.Errorf("natsbench: %d publishes were not acknowledged", n)
	}
	return result(msgs, elapsed), nil
}

// PullConsume reads msgs messages from the start of the stream with a
// durable pull consumer, acknowledging each explicitly.
func PullConsume(ctx context.Context, url string, msgs int) (Result, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return Result{}, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "bench",
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return Result{}, err
	}
	defer it.Stop()
	for got := 0; got < msgs; got++ {
		msg, err := it.Next()
		if err != nil {
			return Result{}, fmt.Errorf("natsbench: pull after %d messages: %w", got, err)
		}
		if err := msg.Ack(); err != nil {
			return Result{}, err
		}
	}
	return result(msgs, time.Since(start)), nil
}

// GroupConsume measures what a rewind consumer group is compared with: a
// JetStream durable pull consumer with explicit acks shared by members
// connections (competing consumers), each fetching batches of batch
// messages and acking each one asynchronously (Ack, not DoubleAck). It
// publishes msgs messages of size bytes into a stream of its own first,
// then times from the first fetch until every message was received and
// the consumer has no ack pending, and deletes the stream.
func GroupConsume(ctx context.Context, url string, members, msgs, size, batch int) (Result, error) {
	name := fmt.Sprintf("BENCHGROUPS%d", time.Now().UnixNano())
	nc, err := nats.Connect(url)
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return Result{}, err
	}
	subject := strings.ToLower(name)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject + ".>"},
		Storage: jetstream.FileStorage})
	if err != nil {
		return Result{}, err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), name)
	data := make([]byte, size)
	for i := 0; i < msgs; i++ {
		if _, err := js.PublishAsync(fmt.Sprintf("%s.%d", subject, i%1000), data,
			jetstream.WithStallWait(time.Minute)); err != nil {
			return Result{}, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench",
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return Result{}, err
	}
	var got atomic.Int64
	errs := make([]error, members)
	conns := make([]jetstream.Consumer, members)
	for m := range members {
		mc, err := nats.Connect(url)
		if err != nil {
			return Result{}, err
		}
		defer mc.Close()
		mjs, err := jetstream.New(mc)
		if err != nil {
			return Result{}, err
		}
		if conns[m], err = mjs.Consumer(ctx, name, "bench"); err != nil {
			return Result{}, err
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for m := range members {
		wg.Go(func() {
			for got.Load() < int64(msgs) && ctx.Err() == nil {
				b, err := conns[m].Fetch(batch, jetstream.FetchMaxWait(200*time.Millisecond))
				if err != nil {
					errs[m] = err
					return
				}
				for msg := range b.Messages() {
					if err := msg.Ack(); err != nil {
						errs[m] = err
						return
					}
					got.Add(1)
				}
				if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
					errs[m] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return Result{}, err
		}
		if info.NumAckPending == 0 && info.AckFloor.Consumer >= uint64(msgs) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return result(msgs, time.Since(start)), nil
}
