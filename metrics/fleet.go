package metrics

import "github.com/prometheus/client_golang/prometheus"

// fleetOps are the label values of bastion_fleet_store_failures_total: the
// fleet store calls that can fail. Any other value counts as "other", so
// that the set of series stays fixed.
var fleetOps = []string{"put", "delete", "list", "kills", "request_kill", "admit_user", "set_user", "fail", "host_keys", "other"}

// FleetStore registers the fleet store's series: its failures by call,
// and a gauge that is 1 while degraded() reports it degraded.
func (m *Metrics) FleetStore(degraded func() bool) {
	if m == nil {
		return
	}
	m.fleetFailures = factory{m.reg}.counterVec("bastion_fleet_store_failures_total",
		"Fleet store (fleet.dynamodb_table) calls that failed, by call; the replica fell back to local state.", "op")
	for _, op := range fleetOps {
		m.fleetFailures.WithLabelValues(op)
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bastion_fleet_store_degraded",
		Help: "1 while the fleet store is degraded (a call failed in the last 30 s): limits use local counts, host keys not confirmed before are refused.",
	}, func() float64 {
		if degraded() {
			return 1
		}
		return 0
	}))
}

// FleetStoreFailure counts a failed fleet store call.
func (m *Metrics) FleetStoreFailure(op string) {
	if m == nil || m.fleetFailures == nil {
		return
	}
	found := false
	for _, o := range fleetOps {
		found = found || o == op
	}
	if !found {
		op = "other"
	}
	m.fleetFailures.WithLabelValues(op).Inc()
}
