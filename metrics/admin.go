package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the admin endpoints:
//
//	/metrics  Prometheus text format
//	/healthz  200 "ok" while the process serves HTTP at all (liveness)
//	/readyz   200 "ready" when ready returns a nil error, else 503 "not
//	          ready: " and the error (readiness: config loaded, host keys
//	          present, not draining, every provider able to work); then
//	          the lines ready reports, one per component ("ec2: ok")
func (m *Metrics) Handler(ready func() (lines []string, err error)) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		lines, err := ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", err)
		} else {
			fmt.Fprintln(w, "ready")
		}
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	})
	return mux
}

// AdminServer serves Handler on l until ctx is done, then shuts down within
// a second. It returns nil after a shutdown.
func (m *Metrics) AdminServer(ctx context.Context, l net.Listener, ready func() ([]string, error)) error {
	srv := &http.Server{
		Handler:           m.Handler(ready),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	})
	defer stop()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
