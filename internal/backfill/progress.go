package backfill

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dualwrite/ingest/loader"
	"github.com/schollz/progressbar/v3"
)

// DefaultLogEvery is the ProgressLog interval when Options.LogEvery is 0.
const DefaultLogEvery = 10 * time.Second

// barTick is how often the bar is redrawn.
const barTick = 200 * time.Millisecond

// reporter shows a running job's progress: a bar on a terminal, log lines
// otherwise. Bytes are the checkpoints' (what every sink acknowledged);
// the rate and ETA count only this run's share, so a resumed job does not
// show the bytes an earlier run did as speed.
type reporter struct {
	mode  ProgressMode
	out   io.Writer
	log   *slog.Logger
	every time.Duration
	total int64

	bar     *progressbar.ProgressBar
	base    int64 // bytes the checkpoints covered when this run started
	based   bool
	startAt time.Time

	lastLines int64
	lastAt    time.Time
	linesRate float64 // lines/s, smoothed
}

func newReporter(o Options, pr loader.BackfillProgress, log *slog.Logger) *reporter {
	r := &reporter{mode: o.Progress, out: o.Out, log: log, every: o.LogEvery, total: pr.TotalBytes}
	if r.out == nil {
		r.mode = ProgressOff
	}
	if r.every <= 0 {
		r.every = DefaultLogEvery
	}
	r.startAt, r.lastAt = time.Now(), time.Now()
	return r
}

// follow reports until done delivers the job's result, and returns it.
func (r *reporter) follow(done <-chan error, progress func() loader.BackfillProgress) error {
	// Catch the start closely, so the bar's rate and ETA count from when
	// the pipelines had loaded their checkpoints, not from a later tick.
	for !r.based {
		select {
		case err := <-done:
			r.finish(progress(), err == nil)
			return err
		case <-time.After(5 * time.Millisecond):
			r.observe(progress())
		}
	}
	tick := time.NewTicker(barTick)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case err := <-done:
			r.finish(progress(), err == nil)
			return err
		case now := <-tick.C:
			pr := progress()
			r.observe(pr)
			if r.mode == ProgressBar || now.Sub(lastReport) >= r.every-barTick/2 {
				r.report(pr)
				lastReport = now
			}
		}
	}
}

// observe takes the base once the pipelines have loaded their checkpoints
// (and starts the bar then, so its rate counts from there) and keeps the
// lines/s rate.
func (r *reporter) observe(pr loader.BackfillProgress) {
	now := time.Now()
	if !r.based && pr.Started {
		r.based, r.base, r.startAt = true, pr.ResumedBytes, now
		r.lastLines, r.lastAt = pr.LinesRead, now
		if r.base > 0 {
			r.log.Info("resuming backfill", "done", humanBytes(r.base), "total", humanBytes(r.total))
		}
		if r.mode == ProgressBar && r.total > r.base {
			desc := "backfill"
			if r.base > 0 {
				desc = fmt.Sprintf("backfill (resumed at %s)", humanBytes(r.base))
			}
			r.bar = progressbar.NewOptions64(r.total-r.base,
				progressbar.OptionSetWriter(r.out),
				progressbar.OptionSetDescription(desc),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionSetRenderBlankState(true),
				progressbar.OptionShowDescriptionAtLineEnd(),
			)
		}
	}
	if !r.based {
		return
	}
	switch dt := now.Sub(r.lastAt).Seconds(); {
	case r.linesRate == 0 && dt > 0:
		// Until the first full window: the average since the start.
		r.linesRate = float64(pr.LinesRead-r.lastLines) / dt
		if dt >= 0.5 {
			r.lastLines, r.lastAt = pr.LinesRead, now
		}
	case dt >= 0.5:
		r.linesRate = 0.6*r.linesRate + 0.4*float64(pr.LinesRead-r.lastLines)/dt
		r.lastLines, r.lastAt = pr.LinesRead, now
	}
}

func (r *reporter) report(pr loader.BackfillProgress) {
	if !r.based {
		return
	}
	switch r.mode {
	case ProgressBar:
		if r.bar == nil {
			return
		}
		_ = r.bar.Set64(min(pr.DoneBytes-r.base, r.total-r.base))
		r.bar.Describe(fmt.Sprintf("%s lines, %s lines/s", commas(pr.LinesRead), commas(int64(r.linesRate))))
	case ProgressLog:
		pct := 100.0
		if r.total > 0 {
			pct = 100 * float64(pr.DoneBytes) / float64(r.total)
		}
		args := []any{
			"percent", strconv.FormatFloat(pct, 'f', 1, 64), "done_bytes", pr.DoneBytes, "total_bytes", r.total,
			"lines", pr.LinesRead, "lines_per_s", int64(r.linesRate),
		}
		if eta, ok := r.eta(pr); ok {
			args = append(args, "eta", eta.Round(time.Second).String())
		}
		r.log.Info("backfill progress", args...)
	}
}

// eta extrapolates this run's byte rate.
func (r *reporter) eta(pr loader.BackfillProgress) (time.Duration, bool) {
	elapsed := time.Since(r.startAt)
	did := pr.DoneBytes - r.base
	if did <= 0 || elapsed <= 0 {
		return 0, false
	}
	rest := r.total - pr.DoneBytes
	return time.Duration(float64(rest) / float64(did) * float64(elapsed)), true
}

func (r *reporter) finish(pr loader.BackfillProgress, ok bool) {
	r.observe(pr)
	switch r.mode {
	case ProgressBar:
		r.report(pr)
		if r.bar != nil {
			if ok && pr.Complete {
				_ = r.bar.Finish()
			}
			fmt.Fprintln(r.out)
		}
	case ProgressLog:
		r.report(pr)
	}
}

// WriteText writes the closing report.
func (s *Summary) WriteText(w io.Writer) error {
	state := "complete"
	switch {
	case !s.Complete:
		state = "INCOMPLETE"
	case s.DeadLettersTotal > 0:
		state = "complete, with lines NOT DELIVERED"
	}
	fmt.Fprintf(w, "backfill %s: job %s (generation %d), %d stream(s), %d file(s), %s of %s acknowledged by every sink, in %v\n",
		state, s.Job, s.Generation, s.Streams, s.Files, humanBytes(s.DoneBytes), humanBytes(s.Bytes), s.Elapsed.Round(time.Millisecond))
	if s.Window != "" {
		fmt.Fprintf(w, "window: %s (records without a time are skipped)\n", s.Window)
	}
	if len(s.Accounts) > 0 {
		fmt.Fprintf(w, "accounts: %d listed\n", len(s.Accounts))
	}
	fmt.Fprintf(w, "lines read this run: %s; invalid lines dead-lettered this run: %s\n", commas(s.LinesRead), commas(s.DeadLettered))
	fmt.Fprintf(w, "from disk: %s lines read, %s decoded, %s shared between sinks, %d span(s) re-read by a sink behind the others\n",
		commas(s.Disk.LinesRead), commas(s.Disk.LinesDecoded), commas(s.Disk.LinesShared), s.Disk.PrivateReads)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tCHECKPOINT\tLINES READ\tDELIVERED\tSKIPPED BY FILTER\tNOT ROUTED\tREJECTED\tCOMPLETE")
	for _, k := range s.Sinks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%v\n", k.Sink, k.Checkpoint, k.LinesRead, k.Delivered, k.Filtered, k.NotRouted, k.Rejected, k.Complete)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range s.NotRead {
		fmt.Fprintf(w, "not read: %s: %s\n", f.Path, f.Reason)
	}
	if s.DeadLettersTotal > 0 {
		fmt.Fprintf(w, "not delivered: %d line(s), see %s\n", s.DeadLettersTotal, s.DeadLetterDir)
	}
	if !s.Complete {
		fmt.Fprintln(w, "run the same command again to resume where this run stopped")
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// commas writes n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
