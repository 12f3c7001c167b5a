package assemble

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"bastion/fleet"
	"bastion/metrics"
	"bastion/proxy"
)

// fleetDegradedFor is how long after a failed fleet store call the store
// counts as degraded.
const fleetDegradedFor = 30 * time.Second

// fleetHealth is what /readyz and the metrics say of the fleet store: it
// is degraded for fleetDegradedFor after any call failed. Degraded is not
// unready: the replica goes on with its local state (confirmed host keys
// from its cache, limits from local counts), so /readyz says it and stays
// 200, and bastion_fleet_store_degraded is what to alert on.
type fleetHealth struct {
	m   *metrics.Metrics
	now func() time.Time

	mu   sync.Mutex // protects last, op and err
	last time.Time
	op   string
	err  error
}

func newFleetHealth(m *metrics.Metrics) *fleetHealth {
	h := &fleetHealth{m: m, now: time.Now}
	m.FleetStore(h.degraded)
	return h
}

// failed records a failed call.
func (h *fleetHealth) failed(op string, err error) {
	h.m.FleetStoreFailure(op)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last, h.op, h.err = h.now(), op, err
}

func (h *fleetHealth) degraded() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.last.IsZero() && h.now().Sub(h.last) < fleetDegradedFor
}

// line is the store's line in /readyz.
func (h *fleetHealth) line() string {
	if !h.degraded() {
		return "fleet store: ok"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("fleet store: degraded (%s failed %s ago: %v); limits use this replica's counts, host keys not confirmed before are refused",
		h.op, h.now().Sub(h.last).Truncate(time.Second), h.err)
}

// reportingHostKeys reports the failures of the fleet's host-key calls to
// the fleet's health.
type reportingHostKeys struct {
	fleet.HostKeys
	failed func(op string, err error)
}

func (r reportingHostKeys) Get(ctx context.Context, id string) ([]string, error) {
	keys, err := r.HostKeys.Get(ctx, id)
	if err != nil {
		r.failed("host_keys", err)
	}
	return keys, err
}

func (r reportingHostKeys) Learn(ctx context.Context, id string, keys []string) (bool, []string, error) {
	ok, stored, err := r.HostKeys.Learn(ctx, id, keys)
	if err != nil {
		r.failed("host_keys", err)
	}
	return ok, stored, err
}

// servePeers listens on fleet.advertise for the other replicas (watch of
// a link held here) until the server closes. Start calls it before the SSH
// listener serves, so no link reads Fleet.Advertise yet.
func (b *Bastion) servePeers() error {
	addr := b.Server.Fleet.Advertise
	l := b.peerListener
	if host, _, err := net.SplitHostPort(addr); l == nil && (err != nil || host == "") {
		return fmt.Errorf("fleet.advertise: %q (from %q) names no host the other replicas could reach", addr, b.cfg.Fleet.Advertise)
	}
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("fleet.advertise: listening for the other replicas: %w", err)
		}
	}
	// With port 0 (tests), or a listener handed in, the replica
	// advertises the address it really listens on.
	if _, port, _ := net.SplitHostPort(addr); addr == "" || port == "0" {
		b.Server.Fleet.Advertise = l.Addr().String()
	}
	b.log.Info("peers_listening", zap.String("addr", b.Server.Fleet.Advertise))
	fmt.Fprintf(b.stderr, "bastion: peers on %s\n", b.Server.Fleet.Advertise)
	b.bg.Go(func() {
		if err := b.Server.ServePeers(l); err != nil && err != proxy.ErrServerClosed {
			b.log.Error("peer_listener_failed", zap.Error(err))
		}
	})
	return nil
}
