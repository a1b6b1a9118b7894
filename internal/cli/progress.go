package cli

import (
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress is a terminal progress bar whose rate and ETA come from the
// recent rate (an exponentially weighted moving average), not the whole
// run's average, which misleads when the rate changes. It is a no-op when
// stderr is not a terminal or the command prints JSON.
type progress struct {
	p    *mpb.Progress
	bar  *mpb.Bar
	last time.Time
}

// newProgress starts a bar counting up to total units named unit
// ("events", "rows", "bytes"). total may be 0 when unknown.
func (a *app) newProgress(name, unit string, total int64) *progress {
	if a.jsonOut || !isTerminal(a.stderr) {
		return &progress{}
	}
	p := mpb.New(mpb.WithOutput(a.stderr), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	counter := decor.CountersNoUnit("%d / %d " + unit)
	speed := decor.EwmaSpeed(0, "%.0f "+unit+"/s", 30)
	if unit == "bytes" {
		counter = decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")
		speed = decor.EwmaSpeed(decor.SizeB1024(0), "% .1f/s", 30)
	}
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), counter),
		mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), decor.Name("  "), speed,
			decor.Name("  ETA "), decor.EwmaETA(decor.ET_STYLE_GO, 30)),
	)
	return &progress{p: p, bar: bar, last: time.Now()}
}

// set records that done units are complete.
func (pr *progress) set(done int64) {
	if pr.bar == nil {
		return
	}
	now := time.Now()
	pr.bar.EwmaSetCurrent(done, now.Sub(pr.last))
	pr.last = now
}

// setTotal changes the total, for work whose size becomes known late.
func (pr *progress) setTotal(total int64) {
	if pr.bar != nil {
		pr.bar.SetTotal(total, false)
	}
}

// done completes the bar (or aborts it if the work failed) and waits for
// its last render.
func (pr *progress) done(ok bool) {
	if pr.bar == nil {
		return
	}
	if ok {
		pr.bar.SetTotal(-1, true)
	} else {
		pr.bar.Abort(false)
	}
	pr.p.Wait()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
