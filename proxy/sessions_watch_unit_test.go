package proxy

import (
	"testing"
	"time"
)

// TestWatchersSlowWatcher: a watcher that never reads does not slow the
// sender: output past the bound is dropped and counted, and what is queued
// stays within the bound.
func TestWatchersSlowWatcher(t *testing.T) {
	var ws watchers
	w, ok := ws.add()
	if !ok {
		t.Fatal("add: refused the first watcher")
	}
	chunk := make([]byte, 32<<10)
	start := time.Now()
	for range 320 { // 10 MiB
		ws.send(chunk)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("sending to a stalled watcher took %s, want no wait", d)
	}
	if q := w.queued.Load(); q > watchBuffer {
		t.Errorf("queued %d bytes, want at most %d", q, watchBuffer)
	}
	if w.dropped.Load() == 0 {
		t.Error("dropped nothing, want the overflow dropped")
	}
}

// TestWatchersBounded: a link has at most maxWatchers, none after it
// ended, and ending tells every watcher.
func TestWatchersBounded(t *testing.T) {
	var ws watchers
	var all []*watcher
	for range maxWatchers {
		w, ok := ws.add()
		if !ok {
			t.Fatal("add: refused a watcher under the bound")
		}
		all = append(all, w)
	}
	if _, ok := ws.add(); ok {
		t.Errorf("add: accepted watcher %d, want at most %d", maxWatchers+1, maxWatchers)
	}
	ws.remove(all[0])
	ws.end()
	for _, w := range all[1:] {
		select {
		case <-w.done:
		default:
			t.Error("a watcher was not told that the link ended")
		}
	}
	if _, ok := ws.add(); ok {
		t.Error("add: accepted a watcher after the link ended")
	}
}
