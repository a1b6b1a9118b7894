package eventlog

import (
	"io"
	"sync"
)

// PrefetchReader reads a range of the log with the reading, checksum
// verification and framing done by a goroutine of its own, one batch ahead
// of the caller, so that a replay uses two cores: one checks records while
// the other consumes them. Memory is bounded: at most prefetchDepth
// batches of about prefetchBytes each are in flight.
type PrefetchReader struct {
	batches chan *prefetchBatch
	free    chan *prefetchBatch
	stop    chan struct{}
	wg      sync.WaitGroup
	cur     *prefetchBatch
	i       int
	err     error
	once    sync.Once
}

type prefetchBatch struct {
	buf  []byte
	recs []Record
	err  error // after the records: why the range ended early, or io.EOF
}

const (
	prefetchBytes = 512 << 10
	prefetchDepth = 3
)

// NewPrefetchReader reads positions from..to inclusive (from 0 means 1).
// Close it to stop its goroutine.
func (l *Log) NewPrefetchReader(from, to uint64) *PrefetchReader {
	p := &PrefetchReader{
		batches: make(chan *prefetchBatch, prefetchDepth),
		free:    make(chan *prefetchBatch, prefetchDepth+1),
		stop:    make(chan struct{}),
	}
	for range prefetchDepth + 1 {
		p.free <- &prefetchBatch{buf: make([]byte, 0, prefetchBytes)}
	}
	r := l.NewReader(from)
	p.wg.Add(1)
	go p.produce(r, to)
	return p
}

func (p *PrefetchReader) produce(r *Reader, to uint64) {
	defer p.wg.Done()
	defer r.Close()
	var held Record // read but not yet in a batch; its payload is r's until r.Next
	holding := false
	for {
		var b *prefetchBatch
		select {
		case b = <-p.free:
		case <-p.stop:
			return
		}
		b.buf, b.recs, b.err = b.buf[:0], b.recs[:0], nil
		for {
			var rec Record
			if holding {
				rec, holding = held, false
			} else {
				if r.Position() > to {
					b.err = io.EOF
					break
				}
				var err error
				if rec, err = r.Next(); err != nil {
					b.err = err
					break
				}
			}
			if len(b.recs) > 0 && len(b.buf)+len(rec.Payload) > cap(b.buf) {
				held, holding = rec, true // the batch is full: keep its buffer from growing
				break
			}
			start := len(b.buf)
			b.buf = append(b.buf, rec.Payload...)
			rec.Payload = b.buf[start:len(b.buf):len(b.buf)]
			b.recs = append(b.recs, rec)
		}
		select {
		case p.batches <- b:
		case <-p.stop:
			return
		}
		if b.err != nil {
			return
		}
	}
}

// Next returns the next record, or io.EOF after the range's last one. Its
// payload is valid until the next call.
func (p *PrefetchReader) Next() (Record, error) {
	for p.cur == nil || p.i == len(p.cur.recs) {
		if p.err != nil {
			return Record{}, p.err
		}
		if p.cur != nil {
			if p.cur.err != nil {
				p.err = p.cur.err
				continue
			}
			p.free <- p.cur
		}
		p.cur, p.i = <-p.batches, 0
	}
	rec := p.cur.recs[p.i]
	p.i++
	return rec, nil
}

// Close stops the reading goroutine and waits for it.
func (p *PrefetchReader) Close() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
}
