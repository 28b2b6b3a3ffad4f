// Package health serves a process's /metrics, /healthz and /readyz, the
// same way for `ingest run` and `ingest consume`: /healthz is 200 while the
// process serves (restart it when that fails); /readyz is 200 only while
// every check passes, else 503 with a line per check saying which does not
// and why (for alerting and load balancers, never for restarts: the loader
// and the consumer ride out a sink's outage and catch up by themselves).
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check, e.g. a sink's ping.
type Check struct {
	Name  string
	Check func(context.Context) error
}

// Timeout bounds /readyz: every check runs at once, and one that has not
// answered by then is not ready.
const Timeout = 2 * time.Second

// Serve listens on listen ("" or "off": nothing, no error) and serves the
// three endpoints until stop is called. It returns the address it listens
// on (for listen ports of 0).
func Serve(listen string, reg *prometheus.Registry, checks []Check, log *slog.Logger) (addr string, stop func(), err error) {
	if listen == "" || listen == "off" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), Timeout)
		defer cancel()
		// At once: a check that waits for its timeout (a broker that does
		// not answer) must not use up the others' time.
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() { errs[i] = c.Check(ctx) })
		}
		wg.Wait()
		var b strings.Builder
		code := http.StatusOK
		for i, c := range checks {
			if errs[i] != nil {
				code = http.StatusServiceUnavailable
				fmt.Fprintf(&b, "%s: not ready: %v\n", c.Name, errs[i])
			} else {
				fmt.Fprintf(&b, "%s: ready\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		if code == http.StatusOK {
			fmt.Fprint(w, "ready\n", b.String())
		} else {
			fmt.Fprint(w, "not ready\n", b.String())
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { // stopped by stop
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
