package main

import (
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
