// Package acktrace times every record from its append to its
// acknowledgement by a sink, exactly and per record, for the demo's report
// and for the latency benchmark (`ingest run --trace-acks FILE`,
// scripts/bench-latency).
//
// # How the pieces fit
//
// The append time travels in the line itself: `ingest gen` (internal/gen)
// writes "appended_ns" (Unix nanoseconds, taken just before the writer's
// Append) as the last field of every line, outside "row", so the sinks never
// see it. A [Tracer] wraps each sink through runner.Options.WrapSink
// ([Tracer.Wrap]); when the sink acknowledges a batch successfully, the
// wrapper reads the clock once and, before passing the acknowledgement on to
// the loader (after which the records' bytes are no longer the sink's),
// takes [AppendedNS] of every record and records now - appended_ns.
// Records without the field are counted but not timed; failed
// acknowledgements are ignored, as the loader replays those batches.
//
// Each latency goes to [Options.Out] as one line "<sink>\t<nanoseconds>\n"
// (buffered; [Tracer.Close] flushes), and/or stays in memory
// ([Options.Keep], read back with [Tracer.Latencies]). [Read] parses a trace
// file back into per-sink latencies and [Summarize] gives exact
// nearest-rank percentiles ([Percentile]) over them.
//
// Both clocks are the same host's wall clock (the generator and the loader
// run side by side), so no clock skew enters the figures.
package acktrace
