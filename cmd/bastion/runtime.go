package main

import (
	"os"
	"runtime/debug"
	"syscall"

	"go.uber.org/zap"
)

// raiseOpenFiles raises the soft RLIMIT_NOFILE to the hard limit (each
// link holds about four descriptors: the person's connection, the
// upstream one, and the audit and recording files) and logs the limit, so
// that an operator sizing for thousands of sessions sees it. The Go
// runtime raises it too on Linux; the log line is what counts.
func raiseOpenFiles(log *zap.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("open_files_limit_unknown", zap.Error(err))
		return
	}
	before := lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("open_files_limit_not_raised", zap.Uint64("soft", before), zap.Uint64("hard", lim.Max), zap.Error(err))
			return
		}
	}
	log.Info("open_files_limit", zap.Uint64("soft", lim.Cur), zap.Uint64("hard", lim.Max), zap.Uint64("was", before),
		zap.Uint64("links_about", lim.Cur/4))
}

// gcPercentWithLimit is the GOGC the bastion uses when the operator set a
// memory limit (GOMEMLIMIT) and no GOGC: a splice allocates a packet per
// SSH packet in x/crypto, and collecting four times less often cut the CPU
// per GiB by about 15% in BenchmarkSpliceDown, while the limit still
// bounds the heap.
const gcPercentWithLimit = 400

// tuneGC applies gcPercentWithLimit when GOMEMLIMIT is set and GOGC is
// not, and logs the collector's settings.
func tuneGC(log *zap.Logger) {
	_, gogc := os.LookupEnv("GOGC")
	limit := debug.SetMemoryLimit(-1)
	if !gogc && os.Getenv("GOMEMLIMIT") != "" {
		debug.SetGCPercent(gcPercentWithLimit)
	}
	percent := debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	log.Info("gc_settings", zap.Int("gogc", percent), zap.Int64("memory_limit", limit))
}
